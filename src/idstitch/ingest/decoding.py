"""Request bodies to JSON values: gzip (announced or sniffed), base64 forms, size caps.

PostHog's browser SDK sends gzip as `text/plain` with no header at all, and base64 inside a
`data=` form; the Python clients announce gzip with `Content-Encoding`. Never trust
`Content-Type` to say what the bytes are (wire-formats.md §1.4).
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from typing import Any
from urllib.parse import parse_qs

import msgspec

GZIP_MAGIC = b"\x1f\x8b"

_json = msgspec.json.Decoder()


class BodyError(Exception):
    """The body cannot be decoded; the server answers 400 (or 413 when `too_large`)."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


def gunzip(body: bytes, max_bytes: int) -> bytes:
    """Inflate a gzip body, refusing to produce more than `max_bytes` (a gzip bomb stops here)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as error:
        raise BodyError(f"body is not valid gzip: {error}") from None
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise BodyError(f"body is larger than {max_bytes} bytes once decompressed", too_large=True)
    if not inflater.eof:
        raise BodyError("gzip body is truncated")
    return out


def decode_body(
    body: bytes,
    *,
    content_type: str = "",
    content_encoding: str = "",
    compression_hint: str = "",
    max_bytes: int,
) -> Any:
    """Decode a request body into a JSON value, whatever way a known client encoded it.

    A body that starts like JSON is JSON whatever its `Content-Type` says (curl sends JSON as a
    form by default).
    """
    if len(body) > max_bytes:
        raise BodyError(f"body is larger than {max_bytes} bytes", too_large=True)
    if body.startswith(GZIP_MAGIC) or "gzip" in content_encoding.lower() or compression_hint in ("gzip", "gzip-js"):
        body = gunzip(body, max_bytes)
    looks_like_json = body.lstrip()[:1] in (b"{", b"[")
    if not looks_like_json and ("application/x-www-form-urlencoded" in content_type.lower() or body.startswith(b"data=")):
        body = _form_data(body)
        if body.startswith(GZIP_MAGIC):
            body = gunzip(body, max_bytes)
    if not body.strip():
        raise BodyError("body is empty")
    try:
        value = _decode_json(body)
    except msgspec.DecodeError as error:
        raise BodyError(f"body is not valid JSON: {error}") from None
    except UnicodeDecodeError as error:  # msgspec raises it, not DecodeError, for invalid UTF-8
        raise BodyError(f"body is not valid UTF-8: {error.reason} at byte {error.start}") from None
    except RecursionError:
        raise BodyError(f"body nests arrays and objects more than {MAX_NESTING} deep") from None
    if nests_deeper_than(body, MAX_NESTING):
        # Deeper values would be stored, then fail every reader (pydantic stops at 255 levels).
        raise BodyError(f"body nests arrays and objects more than {MAX_NESTING} deep")
    return value


def _decode_json(body: bytes) -> Any:
    try:
        return _json.decode(body)
    except msgspec.DecodeError:
        if not _SURROGATE_ESCAPE.search(body):
            raise
    # JavaScript's JSON.stringify writes a broken string's lone surrogate as `\ud800`, which is
    # not Unicode; the browser's own TextEncoder makes it U+FFFD, and so does this.
    return _json.decode(replace_lone_surrogates(body))


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
# An escaped backslash (kept, so `\\ud800` stays text), a surrogate pair (kept), a lone surrogate.
_ESCAPES = re.compile(
    rb"\\\\|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|\\u[dD][89a-fA-F][0-9a-fA-F]{2}"
)
_LONE_ESCAPE_LENGTH = len(rb"\ud800")


def replace_lone_surrogates(body: bytes) -> bytes:
    """`body` (JSON) with each `\\u` escape of a lone UTF-16 surrogate replaced by `\\ufffd`."""
    return _ESCAPES.sub(lambda m: b"\\ufffd" if len(m[0]) == _LONE_ESCAPE_LENGTH else m[0], body)


MAX_NESTING = 100
# Everything but quotes and brackets is deleted; `{}` become `[]` (valid JSON nests them properly).
_STRUCTURE = bytes.maketrans(b"{}", b"[]")
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_STRINGS = re.compile(rb'"[^"]*"')


def nests_deeper_than(body: bytes, limit: int) -> bool:
    """Whether the valid JSON `body` nests arrays and objects deeper than `limit`, in a few
    C-speed passes instead of a walk over every value: drop escaped backslashes and quotes, keep
    only quotes and brackets, drop the strings, then peel off one level of `[]` per pass."""
    if b"\\" in body:
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = body.translate(_STRUCTURE, _NOT_STRUCTURE)
    brackets = structure.replace(b'""', b"")
    if len(brackets) <= 2 * limit:
        return False
    if b'"' in brackets:  # some string holds brackets: the quotes must be paired in order
        brackets = _STRINGS.sub(b"", structure)
    for _ in range(limit):
        if not brackets:
            return False
        brackets = brackets.replace(b"[]", b"")
    return bool(brackets)


def _form_data(body: bytes) -> bytes:
    try:
        form = parse_qs(body.decode("ascii"), strict_parsing=False)
    except UnicodeDecodeError:
        raise BodyError("form body is not ASCII") from None
    values = form.get("data")
    if not values:
        raise BodyError("form body has no `data` field")
    text = values[0].replace(" ", "+")  # `+` that went through form decoding came back as spaces
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=False)
    except (binascii.Error, ValueError):
        raise BodyError("form field `data` is not base64") from None
