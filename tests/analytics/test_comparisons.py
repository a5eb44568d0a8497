"""Each comparison of the filter language keeps the same values on the copy as on the store: one
event (and one person) per stored value, and for each condition, the values it keeps on both
sides, as an event property and as a person attribute. Where the random streams meet a value
and a condition by chance, this meets every pair."""

from __future__ import annotations

from typing import Any

import pytest

from idstitch.query.counts import CountSpec
from tests.analytics.sites import Refused, Site, at
from tests.query.test_same_answers import PATTERNS, TIMES

STORED = [
    "pro", "Pro", "PRO", "", " ", "ß", "Straße", "STRASSE", "José", "JOSÉ", "naïve café", "a.b", "abc", "ab\n", "x\ny",
    "😀", "K", "İ", "\\", '"quoted"', "\u00a0", "123", "1", "1.0", "true", "null",
    "\x0b", "a\x1fb", "a\\u000Bb",
    0, 1, -1, 2, 42, 2**31, 2**53, 2**53 + 1, -(2**53) - 1, 2**62 + 1, 2**63 - 1, -(2**63), 2**63, 2**64 - 1,
    0.5, 1.0, -0.0, 1.5, 0.1, 1e20, 1e16, 1.5e17, 1e-6, 2.5e-6, 1e-7, -2.75, 9007199254740993.0, 1.7976931348623157e308,
    9.223372036854776e18, -9.223372036854776e18,
    True, False, None, [], ["pro", "free"], ["PRO"], [1, 2.5], [True], [None], ["a", 1, False], [2**53 + 1], [2**64 - 1],
    [1e20, "x"], {"nested": 1}, {"a": [1e16, "\x1b"]}, {},
    *TIMES,
    "2025-01-20", "2025-01-20T10:00:00Z", "2025-01-20T10:00:00.123456Z", "2025-01-20T10:00:00.1234567Z",
    "2025-01-20T10:00:00+02:00", "2025-01-20 10:00", "2025-01-20 10:00Z", "2025-01-20T10:00:00.0005Z",
    "2025-01-20t10:00:00z", "2025-02-29", "2025-01-20T24:00:00Z", "now", "Now",
]

SCALARS = [
    "pro", "PRO", "", "ß", "STRASSE", "josé", "1", "true", "null", "2025-01-20", 0, 1, -1, 2**53, 2**53 + 1, 2**63 - 1,
    -(2**63), 0.5, 1.0, -0.0, 0.1, 1e20, 9007199254740993.0, 1.7976931348623157e308, 9.223372036854776e18,
    1.8446744073709552e19, -9.223372036854776e18, True, False, None,
]
MOMENTS = [
    "2025-01-20", "2025-01-20T10:00:00Z", "2025-01-20T10:00:00.123Z", "2025-01-20T12:00:00+02:00", "2025-01-20T10:00:00.0004Z",
    "-30d", "now", "2000-01-01", "1582-10-10",
]
CONDITIONS: list[dict[str, Any]] = [
    *({"op": op, "value": v} for op in ("equals", "not_equals") for v in SCALARS),
    *({"op": "in", "value": v} for v in (["pro", 1, True], [None, "", 0], [1.0, "1"], [2**53, False])),
    *({"op": "not_in", "value": v} for v in (["pro", 1, True], [None])),
    *({"op": op, "value": v} for op in ("contains", "not_contains")
      for v in ("pro", "PRO", "o", "é", "É", "ß", "SS", "", "a.", "\n", 1, 2.5, True, False, 0, 2**53, 2**53 + 1,
                1.8446744073709552e19, 2**63 - 1, 1e20)),
    *({"op": "regex", "value": p} for p in PATTERNS),
    {"op": "not_regex", "value": "^p"},
    *({"op": op, "value": v} for op in ("gt", "gte", "lt", "lte")
      for v in (0, 1, -1, 0.5, -0.5, 2**53, 2**53 + 1, -(2**63), 2**63 - 1, 1e20, 9007199254740993.0, 9.223372036854776e18,
                1.8446744073709552e19, -9.223372036854776e18, 1.7976931348623157e308, *MOMENTS)),
    *({"op": op, "value": v} for op in ("after", "before") for v in MOMENTS),
    {"op": "is_set"}, {"op": "is_not_set"},
]


@pytest.fixture(scope="module")
def values_site(analytics_engine, tmp_path_factory):
    """One person per stored value: `v<i>`, with the value as property `k` of its one event and
    as its attribute `k` (where the attribute rules keep it)."""
    from tests.analytics.sites import open_site

    with open_site(tmp_path_factory.mktemp("values"), analytics_engine) as site:
        site.send(*(
            {"type": "track", "distinct_id": f"v{i}", "event": "e", "timestamp": at(i % 30),
             "properties": {"k": value, "i": i}, "set": {"k": value}}
            for i, value in enumerate(STORED)
        ))
        site.catch_up()
        yield site


def kept(site: Site, conn: Any, document: dict[str, Any]) -> Any:
    """Which values a condition keeps: as event properties, and as person attributes."""
    spec = CountSpec(measure="events", interval=None, breakdown_property="i", breakdown_limit=len(STORED) + 1)
    events = site.count(conn, spec, {"property": "k", **document})
    persons = site.count(conn, spec, {"attribute": "k", **document})
    return [
        found if isinstance(found, Refused) else sorted(s["breakdown"] for s in found["series"])
        for found in (events, persons)
    ]


@pytest.mark.parametrize("condition", CONDITIONS, ids=repr)
def test_a_condition_keeps_the_same_values_on_the_copy(values_site, condition):
    site = values_site
    on_store = kept(site, site.conn, condition)
    on_copy = kept(site, site.copy(), condition)
    if on_copy != on_store:
        differing = {
            scope: sorted(set(map(STORED.__getitem__, set(a) ^ set(b))), key=repr)
            for scope, a, b in zip(("property", "attribute"), on_store, on_copy)
            if isinstance(a, list) and isinstance(b, list)
        }
        pytest.fail(f"{condition!r} keeps different values on the copy: {differing!r} (store {on_store}, copy {on_copy})")

