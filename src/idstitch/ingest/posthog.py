"""PostHog's capture format (`/batch/`, `/capture/`, `/e/`, ...) into commands.

Accepts the three envelopes PostHog's capture accepts: `{api_key|token, batch, sent_at}`, a bare
array of events, or one event. Which event is an identity operation follows PostHog exactly
(posthog-reference.md §3.1); what the operation then does is the engine's business.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from idstitch.attributes import NO_OPS, AttributeOps
from idstitch.clock import parse_time
from idstitch.commands import INGEST, Alias, Command, Event, Identify, Merge, Track
from idstitch.ids import normalize_distinct_id
from idstitch.ingest.device import with_device_and_campaign
from idstitch.ingest.fields import read_event_name, read_object, read_ops, read_time, read_uuid
from idstitch.ingest.messages import DecodedRequest
from idstitch.outcomes import Rejection

_TOKEN_KEYS = ("api_key", "token", "$token")
# Events whose attribute operations PostHog ignores: they never change a person.
_NO_PERSON_UPDATES = frozenset({"$groupidentify", "$exception", "$$heatmap"})
_OP_KEYS = {
    "set": "$set",
    "set_once": "$set_once",
    "unset": "$unset",
    "add": "$add",
    "append": "$append",
    "union": "$union",
    "remove": "$remove",
}


class EnvelopeError(Exception):
    """The body is JSON but not a PostHog request; the server answers 400."""


def decode_request(payload: Any, received_at: datetime, query_sent_at: str | None = None) -> DecodedRequest:
    """Turn a decoded PostHog body into commands and per-event rejections."""
    if isinstance(payload, list):
        envelope: dict[str, Any] = {}
        events = payload
    elif isinstance(payload, dict) and isinstance(payload.get("batch"), list):
        envelope = payload
        events = payload["batch"]
    elif isinstance(payload, dict) and "event" in payload:
        envelope = {}
        events = [payload]
    else:
        raise EnvelopeError("expected an object with a `batch` list, an array of events, or one event")

    sent_at = parse_time(envelope.get("sent_at")) or (parse_time(query_sent_at) if query_sent_at else None)
    decoded = DecodedRequest(token=_token(envelope, events))
    for index, raw in enumerate(events):
        decoded.add(index, event_command(raw, sent_at, received_at), raw)
    return decoded


def _token(envelope: dict[str, Any], events: list[Any]) -> str | None:
    for key in _TOKEN_KEYS:
        if isinstance(envelope.get(key), str):
            return envelope[key]
    for raw in events:
        if not isinstance(raw, dict):
            continue
        properties = raw.get("properties")
        for source in (properties if isinstance(properties, dict) else {}, raw):
            for key in _TOKEN_KEYS:
                if isinstance(source.get(key), str):
                    return source[key]
    return None


def event_command(raw: Any, sent_at: datetime | None, received_at: datetime) -> Command | Rejection:
    """One PostHog event as a command, or why it is rejected."""
    if not isinstance(raw, dict):
        return Rejection("an event must be a JSON object")
    properties = read_object(raw.get("properties"), "properties")
    if isinstance(properties, Rejection):
        return properties
    name = read_event_name(raw.get("event"))
    if isinstance(name, Rejection):
        return name
    raw_id = raw.get("distinct_id")
    if raw_id is None:
        raw_id = raw.get("$distinct_id")
    if raw_id is None:
        raw_id = properties.get("distinct_id")
    if raw_id is None:
        return Rejection("missing distinct_id (top level or in properties)")
    distinct_id = normalize_distinct_id(raw_id)
    if isinstance(distinct_id, Rejection):
        return distinct_id
    uuid = read_uuid(raw.get("uuid"), "uuid")
    if isinstance(uuid, Rejection):
        return uuid
    timestamp = read_time(raw.get("timestamp"), "timestamp", sent_at, received_at)
    if isinstance(timestamp, Rejection):
        return timestamp
    ops = _ops(raw, properties)
    if isinstance(ops, Rejection):
        return ops
    if name in _NO_PERSON_UPDATES:
        ops = NO_OPS

    stored = with_device_and_campaign({k: v for k, v in properties.items() if k not in _STRIPPED})
    session_id = properties.get("$session_id")
    event = Event(
        uuid=uuid,
        distinct_id=distinct_id,
        name=name,
        timestamp=timestamp,
        properties=stored,
        ops=ops,
        # Only boolean false turns person processing off (PostHog; anything else counts as true).
        process_person=properties.get("$process_person_profile") is not False,
        session_id=session_id if isinstance(session_id, str) else None,
    )
    return _identity_command(event, properties)


_STRIPPED = frozenset({"distinct_id", "token", "$token", "api_key", *_OP_KEYS.values()})


def _ops(raw: dict[str, Any], properties: dict[str, Any]) -> AttributeOps | Rejection:
    parts: dict[str, tuple[str, Any]] = {}
    for operation, key in _OP_KEYS.items():
        inside = properties.get(key)
        top = raw.get(key)
        if isinstance(inside, dict) and isinstance(top, dict):
            # PostHog merges top-level `$set`/`$set_once` into properties; the top level wins.
            parts[operation] = (key, {**inside, **top})
        elif top is not None:
            parts[operation] = (key, top)
        else:
            parts[operation] = (f"properties.{key}", inside)
    return read_ops(parts)


def _identity_command(event: Event, properties: dict[str, Any]) -> Command | Rejection:
    if event.name == "$identify" and "$anon_distinct_id" in properties:
        anonymous = properties["$anon_distinct_id"]
        # PostHog stringifies: a null anonymous id becomes "null", which is then refused as illegal.
        anonymous_id = normalize_distinct_id("null" if anonymous is None else anonymous)
        if isinstance(anonymous_id, Rejection):
            if anonymous == "":
                anonymous_id = ""
            else:
                return Rejection(f"$anon_distinct_id: {anonymous_id}")
        return Identify(event, user_id=event.distinct_id, anonymous_id=anonymous_id)
    if event.name == "$identify":
        return Identify(event, user_id=event.distinct_id)
    if event.name in ("$create_alias", "$merge_dangerously"):
        alias = properties.get("alias")
        # PostHog: an alias that is falsy in JavaScript ("", 0, null, false) does nothing; `[]` and
        # `{}` are truthy there, so they are ids of the wrong type here, and rejected (§2).
        if alias in (None, False, "", 0):
            return Track(event)
        source = normalize_distinct_id(alias)
        if isinstance(source, Rejection):
            return Rejection(f"alias: {source}")
        if event.name == "$merge_dangerously":
            return Merge(target=event.distinct_id, source=source, actor=INGEST, event=event)
        return Alias(event, target=event.distinct_id, source=source)
    return Track(event)
