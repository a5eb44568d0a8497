"""idstitch's own ingest format (`POST /ingest/batch` and `/ingest/{type}`) into commands.

One message per event:

    {"type": "track", "distinct_id": "anon-1", "event": "Viewed pricing", "properties": {...}}
    {"type": "identify", "user_id": "user-42", "anonymous_id": "anon-1", "set": {"plan": "pro"}}
    {"type": "identify", "user_id": null, "anonymous_id": "anon-1", "set": {"plan": "trial"}}
    {"type": "alias", "distinct_id": "user-42", "alias": "legacy-7"}
    {"type": "attributes", "distinct_id": "user-42", "add": {"logins": 1}}

Every message may carry `uuid`, `timestamp`, `session_id` and the attribute operations `set`,
`set_once`, `unset`, `add`, `append`, `union`, `remove`. A batch is
`{"token": ..., "sent_at": ..., "batch": [message, ...]}`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from idstitch.clock import parse_time
from idstitch.commands import Alias, Command, Event, Identify, Track
from idstitch.ids import normalize_distinct_id
from idstitch.ingest.device import with_device_and_campaign
from idstitch.ingest.fields import read_event_name, read_object, read_ops, read_time, read_uuid
from idstitch.ingest.messages import DecodedRequest
from idstitch.outcomes import Rejection

MESSAGE_TYPES = ("track", "identify", "alias", "attributes")
_OPERATIONS = ("set", "set_once", "unset", "add", "append", "union", "remove")


class EnvelopeError(Exception):
    """The body is JSON but not an idstitch request; the server answers 400."""


def decode_batch(payload: Any, received_at: datetime, token: str | None) -> DecodedRequest:
    if not isinstance(payload, dict) or not isinstance(payload.get("batch"), list):
        raise EnvelopeError("expected an object with a `batch` list of messages")
    return _decode(payload, payload["batch"], received_at, token)


def decode_single(payload: Any, message_type: str, received_at: datetime, token: str | None) -> DecodedRequest:
    if not isinstance(payload, dict):
        raise EnvelopeError("expected a JSON object")
    return _decode(payload, [{**payload, "type": message_type}], received_at, token)


def _decode(envelope: dict[str, Any], messages: list[Any], received_at: datetime, token: str | None) -> DecodedRequest:
    body_token = envelope.get("token")
    decoded = DecodedRequest(token=body_token if isinstance(body_token, str) else token)
    sent_at = parse_time(envelope.get("sent_at"))
    for index, raw in enumerate(messages):
        decoded.add(index, message_command(raw, sent_at, received_at), raw)
    return decoded


def message_command(raw: Any, sent_at: datetime | None, received_at: datetime) -> Command | Rejection:
    if not isinstance(raw, dict):
        return Rejection("a message must be a JSON object")
    kind = raw.get("type")
    if kind not in MESSAGE_TYPES:
        return Rejection(f"`type` must be one of {', '.join(MESSAGE_TYPES)}; got {kind!r}")
    uuid = read_uuid(raw.get("uuid"), "uuid")
    if isinstance(uuid, Rejection):
        return uuid
    timestamp = read_time(raw.get("timestamp"), "timestamp", sent_at, received_at)
    if isinstance(timestamp, Rejection):
        return timestamp
    properties = read_object(raw.get("properties"), "properties")
    if isinstance(properties, Rejection):
        return properties
    properties = with_device_and_campaign(properties)
    ops = read_ops({name: (name, raw.get(name)) for name in _OPERATIONS})
    if isinstance(ops, Rejection):
        return ops
    session_id = raw.get("session_id")
    if session_id is not None and not isinstance(session_id, str):
        return Rejection("`session_id` must be a string")

    def event(distinct_id: str, name: str) -> Event:
        return Event(uuid, distinct_id, name, timestamp, properties, ops, True, session_id)

    if kind == "identify":
        user_id = _optional_id(raw, "user_id")
        anonymous_id = _optional_id(raw, "anonymous_id")
        if isinstance(user_id, Rejection):
            return user_id
        if isinstance(anonymous_id, Rejection):
            return anonymous_id
        if user_id is None:
            # Hotjar's `hj('identify', null, attrs)`: attributes for the anonymous visitor.
            if anonymous_id is None:
                return Rejection("identify needs `user_id`, or `anonymous_id` when `user_id` is null")
            return Identify(event(anonymous_id, "$identify"), user_id=None, anonymous_id=anonymous_id)
        return Identify(event(user_id, "$identify"), user_id=user_id, anonymous_id=anonymous_id)

    distinct_id = _required_id(raw, "distinct_id")
    if isinstance(distinct_id, Rejection):
        return distinct_id
    if kind == "alias":
        alias = _required_id(raw, "alias")
        if isinstance(alias, Rejection):
            return alias
        return Alias(event(distinct_id, "$create_alias"), target=distinct_id, source=alias)
    if kind == "attributes":
        return Track(event(distinct_id, "$set"))
    name = read_event_name(raw.get("event"))
    if isinstance(name, Rejection):
        return name
    return Track(event(distinct_id, name))


def _optional_id(raw: dict[str, Any], field: str) -> str | None | Rejection:
    if raw.get(field) is None:
        return None
    return _required_id(raw, field)


def _required_id(raw: dict[str, Any], field: str) -> str | Rejection:
    if field not in raw or raw[field] is None:
        return Rejection(f"missing `{field}`")
    value = normalize_distinct_id(raw[field])
    if isinstance(value, Rejection):
        return Rejection(f"`{field}`: {value}")
    return value
