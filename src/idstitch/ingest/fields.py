"""Reading the fields every wire format shares: event uuid, name, time, properties, operations.

Each reader returns the value or a `Rejection` naming the field and what was wrong with it; the
adapters stop at the first rejection and the event is dead-lettered.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from idstitch.attributes import NO_OPS, AttributeOps
from idstitch.clock import event_time, parse_time
from idstitch.outcomes import Rejection

MAX_EVENT_NAME_LENGTH = 200
MAX_UUID_LENGTH = 200


def uuid7() -> str:
    """A time-ordered UUID (RFC 9562 version 7) for events sent without one."""
    millis = time.time_ns() // 1_000_000
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= int.from_bytes(os.urandom(10), "big") & ((1 << 76) - 1)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return str(uuid.UUID(int=value))


def read_uuid(raw: Any, field: str) -> str | Rejection:
    if raw is None:
        return uuid7()
    if not isinstance(raw, str) or not raw or len(raw) > MAX_UUID_LENGTH:
        return Rejection(f"`{field}` must be a non-empty string of at most {MAX_UUID_LENGTH} characters")
    if "\x00" in raw:  # as for distinct ids (§2): PostgreSQL cannot store it, and no client sends one
        return Rejection(f"`{field}` must not contain a NUL character")
    return raw


def read_event_name(raw: Any, field: str = "event") -> str | Rejection:
    if not isinstance(raw, str) or not raw:
        return Rejection(f"`{field}` must be a non-empty string")
    if len(raw) > MAX_EVENT_NAME_LENGTH:
        return Rejection(f"`{field}` is {len(raw)} characters long; at most {MAX_EVENT_NAME_LENGTH} are allowed")
    return raw


def read_time(raw: Any, field: str, sent_at: datetime | None, received_at: datetime) -> datetime | Rejection:
    """The event's time corrected for the client's clock skew (`sent_at` of the request)."""
    if raw is None:
        return received_at
    parsed = parse_time(raw)
    if parsed is None:
        return Rejection(f"`{field}` {raw!r} is not an ISO-8601 time or epoch number within the years 1 to 9999 UTC")
    try:
        return event_time(parsed, sent_at, received_at)
    except OverflowError:  # a skew correction past year 1 or 9999 (say timestamp 0001, sent_at 9999)
        return Rejection(f"`{field}` {raw!r} is too far from `sent_at` to correct for clock skew")


def read_object(raw: Any, field: str) -> dict[str, Any] | Rejection:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        return Rejection(f"`{field}` must be an object")
    return raw


def read_ops(parts: Mapping[str, tuple[str, Any]]) -> AttributeOps | Rejection:
    """Attribute operations from `{operation: (field name on the wire, raw value)}`.

    `set`, `set_once`, `add`, `append`, `union` and `remove` take objects; `unset` takes a list
    of keys or an object whose keys are used (both are sent by PostHog clients).
    """
    values: dict[str, Any] = {}
    for operation, (field, raw) in parts.items():
        if raw is None:
            continue
        if operation == "unset":
            if isinstance(raw, dict):
                raw = list(raw)
            if not isinstance(raw, list) or not all(isinstance(k, str) for k in raw):
                return Rejection(f"`{field}` must be a list of attribute keys")
            values["unset"] = tuple(raw)
            continue
        if not isinstance(raw, dict):
            return Rejection(f"`{field}` must be an object")
        if operation == "add":
            bad = [k for k, v in raw.items() if isinstance(v, bool) or not isinstance(v, (int, float))]
            if bad:
                return Rejection(f"`{field}` must map keys to numbers; {bad[0]!r} is not a number")
        values[operation] = raw
    return AttributeOps(**values) if values else NO_OPS
