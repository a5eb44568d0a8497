"""JSON typed by people and programs into the API and the UI: one decoder for request bodies,
JSON query parameters (`filter=`) and JSON form fields.

A lone UTF-16 surrogate escape (`"\\ud800"`: JavaScript's `JSON.stringify` emits one for a string
cut in the middle of an emoji) decodes to U+FFFD, the way a browser shows it, instead of a
string that no store can encode: the ingest routes' rule (`ingest/decoding.py`). Invalid UTF-8
and NaN stay refused; values nested deeper than ingest allows are refused as they are there.
"""

from __future__ import annotations

from typing import Any

import msgspec

from idstitch.ingest.decoding import MAX_NESTING, nests_deeper_than, replace_lone_surrogates

_decode = msgspec.json.Decoder().decode


class JsonInputError(ValueError):
    """The text is not a JSON document idstitch accepts; the message says why."""


def decode_json(text: bytes | str) -> Any:
    """The JSON value of `text`, lone surrogates as U+FFFD; JsonInputError if it is not JSON."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    data = replace_lone_surrogates(data)
    try:
        value = _decode(data)
    except (msgspec.DecodeError, RecursionError) as error:
        raise JsonInputError(f"not JSON: {error}") from None
    except UnicodeDecodeError as error:
        raise JsonInputError(f"not UTF-8: {error.reason} at byte {error.start}") from None
    if nests_deeper_than(data, MAX_NESTING):
        raise JsonInputError(f"nests arrays and objects more than {MAX_NESTING} deep")
    return value
