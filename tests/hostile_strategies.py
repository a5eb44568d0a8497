"""Hypothesis strategies for hostile values: the encodings that broke idstitch's ingest once
(issue 17), for any fuzz test to reuse.

* `lone_surrogate_texts`: strings holding UTF-16 surrogates, paired or not (`json_body` writes
  them as `\\ud800` escapes, as JavaScript's JSON.stringify does for a broken string);
* `nul_texts`: strings holding NUL;
* `calendar_edge_times`: ISO times at year 1 and 9999 with offsets up to ±23:59, and epoch
  numbers at and past the ends of the calendar;
* `huge_integers`, `numbers_as_text`: integers no float can hold, numbers written as strings;
* `long_texts`, `deep_values`: values far longer or deeper than any real client sends;
* `hostile_values`: all of the above and any JSON value of any type.

`mutations(base, keys)` turns a valid message into a hostile one by replacing or adding a few
values, at the top level and inside its nested objects; `as_received` is what a string becomes
on the server (a lone surrogate becomes U+FFFD).
"""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import strategies as st

SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff", "\ud83d", "\ude00", "\ud83d\ude00"]
lone_surrogate_texts = st.lists(
    st.sampled_from(SURROGATES) | st.text(max_size=3) | st.just("\\") | st.just("\\ud800"), min_size=1, max_size=6
).map("".join)
nul_texts = st.lists(st.just("\x00") | st.text(max_size=4), min_size=1, max_size=4).map("".join).filter(lambda s: "\x00" in s)

EDGE_OFFSETS = ["+23:59", "-23:59", "+14:00", "-12:00", "Z", "", "+00:00", "+23:59:59.999999"]
EDGE_DAYS = ["0001-01-01T00:00:00", "0001-01-01T23:59:59.999999", "9999-12-31T23:59:59.999999", "9999-12-31T00:00:00",
             "1970-01-01T00:00:00", "0001-01-01", "9999-12-31"]
# Epoch seconds and milliseconds at and just past year 1 and year 9999, and far past them.
EDGE_EPOCHS = [-62135596800, -62135596801, 253402300799, 253402300800, 253402300799999, 253402300800000,
               -62135596800000, 2**63, -(2**63), 2**64, 10**20, 1e20, 1.7976931348623157e308, -1.7976931348623157e308]
calendar_edge_times = st.one_of(
    st.builds(lambda day, offset: day + offset, st.sampled_from(EDGE_DAYS), st.sampled_from(EDGE_OFFSETS)),
    st.builds(
        lambda day, minutes: f"{day}{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}",
        st.sampled_from(EDGE_DAYS[:4]), st.integers(-1439, 1439),
    ),
    st.sampled_from(EDGE_EPOCHS),
    st.sampled_from(EDGE_EPOCHS).map(str),
)
huge_integers = st.one_of(
    st.integers(min_value=2**63 - 2, max_value=2**64 + 2),
    st.integers(min_value=2, max_value=4000).map(lambda digits: int("9" * digits)),
    st.integers(min_value=2, max_value=4000).map(lambda digits: -int("9" * digits)),
)
numbers_as_text = st.one_of(
    st.sampled_from(["1e400", "-1e400", "NaN", "nan", "Infinity", "-Infinity", "inf", "-0", "0x10", " 12 ", "1_000", "١٢"]),
    st.floats(allow_nan=False).map(repr),
    st.integers().map(str),
)
# URLs that the standard library's parsers refuse (`urlsplit` raises on an unclosed IPv6 host).
hostile_urls = st.sampled_from(["http://[", "https://[::1/x", "//[v1.x]/", "http://a]b/", "http://x:99999/", "http://x:port/",
                                "https://ex\u0000ample.com/?utm_source=%ff%fe", "?utm_source=a&utm_source=b", "http://%zz/"])
long_texts = st.integers(min_value=200, max_value=20_000).map(lambda n: "x" * n)


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


deep_values = st.integers(min_value=20, max_value=120).map(nested)

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
    st.sampled_from(["", " ", "null", "undefined", "[object Object]", "a@b.co", "true", "0"]),
)
any_json = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
hostile_texts = st.one_of(lone_surrogate_texts, nul_texts, long_texts, numbers_as_text, hostile_urls)
hostile_values = st.one_of(
    hostile_texts, calendar_edge_times, huge_integers, deep_values, any_json,
    st.dictionaries(hostile_texts, any_json, max_size=3), st.lists(hostile_texts, max_size=3),
)


@st.composite
def mutations(draw: st.DrawFn, base: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """`base` with one to four values replaced, added or removed: a top-level key of `keys` (or
    any key), or a key inside one of its nested objects."""
    message = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        objects = list(_objects_in(message))
        target = draw(st.sampled_from(objects))
        key = draw(st.sampled_from(keys) | st.sampled_from(sorted(target) or keys) | hostile_texts)
        if draw(st.integers(0, 9)) == 0:
            target.pop(key, None)
        elif isinstance(target.get(key), str) and draw(st.booleans()):
            target[key] = draw(hostile_texts)  # a text where a text is expected, but a hostile one
        else:
            target[key] = draw(hostile_values)
    return message


def _objects_in(value: dict[str, Any], depth: int = 3) -> Any:
    yield value
    if depth:
        for inner in value.values():
            if isinstance(inner, dict):
                yield from _objects_in(inner, depth - 1)


def json_body(value: Any) -> bytes:
    """`value` as a request body, every non-ASCII character escaped (surrogates as `\\udXXX`)."""
    return json.dumps(value).encode()


_PAIRED_OR_LONE = re.compile("[\ud800-\udbff][\udc00-\udfff]|[\ud800-\udfff]")


def as_received(text: str) -> str:
    """`text` as the server stores it: a surrogate pair is the character it encodes, and a lone
    surrogate is U+FFFD (the JSON body is read as UTF-16 escapes would be by a browser)."""
    return _PAIRED_OR_LONE.sub(
        lambda m: m[0].encode("utf-16-le", "surrogatepass").decode("utf-16-le") if len(m[0]) == 2 else "\ufffd", text
    )
