"""Segment's tracking format (`/v1/batch`, `/v1/identify`, `/v1/t`, ...) into commands.

What segment-analytics-python and analytics.js send (wire-formats.md §3): messages with a
`type`, `userId` and `anonymousId` (either may be null), `messageId`, `timestamp` and `context`;
a batch is `{"batch": [...], "sentAt", "writeKey"}`. The mapping:

    identify(userId, anonymousId, traits)  -> Identify, `set` = traits
    identify(null, anonymousId, traits)    -> Identify without a user id (Hotjar's identify(null))
    alias(previousId, userId)              -> Alias(target=userId, source=previousId)
    track(event, properties)               -> Track(event)
    page(name, category) / screen(...)     -> Track("$pageview" / "$screen")
    group(groupId, traits)                 -> Track("$groupidentify"), no attribute changes

`messageId` is the event uuid (a retry is a duplicate), `sentAt` corrects the client's clock, and
`context.page`/`context.campaign` become PostHog's `$current_url`, `$referrer`, `utm_*` keys, and
`context.userAgent` its `$browser`, `$os` and `$device_type` (ingest/device.py), so the person's
automatic attributes fill in. What an identify or alias then does is the engine's business.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from idstitch.attributes import NO_OPS, AttributeOps
from idstitch.clock import parse_time
from idstitch.commands import Alias, Command, Event, Identify, Track
from idstitch.ids import normalize_distinct_id
from idstitch.ingest.device import with_device_and_campaign
from idstitch.ingest.fields import read_event_name, read_object, read_time, read_uuid
from idstitch.ingest.messages import DecodedRequest
from idstitch.outcomes import Rejection

MESSAGE_TYPES = ("identify", "track", "alias", "page", "screen", "group")
# analytics.js posts each message to the first letter of its type (`/v1/t`, `/v1/i`, ...).
SHORT_TYPES = {kind[0]: kind for kind in MESSAGE_TYPES}

# context.campaign key -> the event property PostHog (and first_touch.py) reads.
_CAMPAIGN_KEYS = {
    "name": "utm_campaign",
    "source": "utm_source",
    "medium": "utm_medium",
    "term": "utm_term",
    "content": "utm_content",
}
_PAGE_KEYS = ("url", "path", "referrer", "title", "search")


class EnvelopeError(Exception):
    """The body is JSON but not a Segment request; the server answers 400."""


def decode_batch(payload: Any, received_at: datetime, token: str | None) -> DecodedRequest:
    """A `{"batch": [...], "sentAt", "writeKey"}` request (`/v1/batch`, `/v1/import`, `/v1/b`).

    `token` is the write key from the Basic auth header; without one the body's `writeKey` is used.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("batch"), list):
        raise EnvelopeError("expected an object with a `batch` list of messages")
    return _decode(payload, payload["batch"], received_at, token)


def decode_single(payload: Any, message_type: str, received_at: datetime, token: str | None) -> DecodedRequest:
    """One message posted to its own route (`/v1/identify`, `/v1/i`, ...); the route names its type."""
    assert message_type in MESSAGE_TYPES, f"unknown Segment message type {message_type!r}"
    if not isinstance(payload, dict):
        raise EnvelopeError("expected a JSON object")
    return _decode(payload, [{**payload, "type": message_type}], received_at, token)


def _decode(envelope: dict[str, Any], messages: list[Any], received_at: datetime, token: str | None) -> DecodedRequest:
    body_key = envelope.get("writeKey")
    decoded = DecodedRequest(token=token or (body_key if isinstance(body_key, str) else None))
    sent_at = parse_time(envelope.get("sentAt"))
    for index, raw in enumerate(messages):
        decoded.add(index, message_command(raw, sent_at, received_at), raw)
    return decoded


def message_command(raw: Any, sent_at: datetime | None, received_at: datetime) -> Command | Rejection:
    """One Segment message as a command, or why it is rejected."""
    if not isinstance(raw, dict):
        return Rejection("a message must be a JSON object")
    kind = raw.get("type")
    if kind not in MESSAGE_TYPES:
        return Rejection(f"`type` must be one of {', '.join(MESSAGE_TYPES)}; got {kind!r}")
    uuid = read_uuid(raw.get("messageId"), "messageId")
    if isinstance(uuid, Rejection):
        return uuid
    # analytics.js puts `sentAt` on each message it posts alone.
    message_sent_at = parse_time(raw.get("sentAt")) or sent_at
    timestamp = read_time(raw.get("timestamp"), "timestamp", message_sent_at, received_at)
    if isinstance(timestamp, Rejection):
        return timestamp
    context = read_object(raw.get("context"), "context")
    if isinstance(context, Rejection):
        return context
    properties = read_object(raw.get("properties"), "properties")
    if isinstance(properties, Rejection):
        return properties
    traits = read_object(raw.get("traits"), "traits")
    if isinstance(traits, Rejection):
        return traits
    user_id = _optional_id(raw, "userId")
    if isinstance(user_id, Rejection):
        return user_id
    anonymous_id = _optional_id(raw, "anonymousId")
    if isinstance(anonymous_id, Rejection):
        return anonymous_id
    session_id = context.get("sessionId", context.get("session_id"))

    def event(distinct_id: str, name: str, stored: dict[str, Any], ops: AttributeOps = NO_OPS) -> Event:
        return Event(
            uuid, distinct_id, name, timestamp, stored, ops, True, session_id if isinstance(session_id, str) else None
        )

    if kind == "group":
        group_id = _required_id(raw, "groupId")
        if isinstance(group_id, Rejection):
            return group_id
        distinct_id = user_id or anonymous_id
        if distinct_id is None:
            return _missing_ids()
        # PostHog's `$groupidentify`: the group's traits describe the group, never the person.
        stored = {**_library(context), "$group_type": "group", "$group_key": group_id, "$group_set": traits}
        return Track(event(distinct_id, "$groupidentify", stored))

    stored = with_device_and_campaign({**_context_properties(context, properties if kind == "page" else {}), **properties})
    if kind == "identify":
        ops = AttributeOps(set=traits) if traits else NO_OPS
        if user_id is None:
            # Hotjar's `hj('identify', null, attrs)`: attributes for the anonymous visitor.
            if anonymous_id is None:
                return _missing_ids()
            return Identify(event(anonymous_id, "$identify", stored, ops), user_id=None, anonymous_id=anonymous_id)
        return Identify(event(user_id, "$identify", stored, ops), user_id=user_id, anonymous_id=anonymous_id)
    if kind == "alias":
        previous_id = _required_id(raw, "previousId")
        if isinstance(previous_id, Rejection):
            return previous_id
        if user_id is None:
            return Rejection("alias needs `userId`")
        return Alias(event(user_id, "$create_alias", stored), target=user_id, source=previous_id)

    distinct_id = user_id or anonymous_id
    if distinct_id is None:
        return _missing_ids()
    if kind == "track":
        name = read_event_name(raw.get("event"))
        if isinstance(name, Rejection):
            return name
        return Track(event(distinct_id, name, stored))
    for key in ("name", "category"):
        if isinstance(raw.get(key), str) and key not in stored:
            stored[key] = raw[key]
    if kind == "screen":
        if isinstance(raw.get("name"), str):
            stored.setdefault("$screen_name", raw["name"])
        return Track(event(distinct_id, "$screen", stored))
    return Track(event(distinct_id, "$pageview", stored))


def _missing_ids() -> Rejection:
    return Rejection("a message needs `userId` or `anonymousId`")


def _optional_id(raw: dict[str, Any], field: str) -> str | None | Rejection:
    # The client always sends both keys, the unused one as null.
    if raw.get(field) is None:
        return None
    return _required_id(raw, field)


def _required_id(raw: dict[str, Any], field: str) -> str | Rejection:
    if raw.get(field) is None:
        return Rejection(f"missing `{field}`")
    value = normalize_distinct_id(raw[field])
    if isinstance(value, Rejection):
        return Rejection(f"`{field}`: {value}")
    return value


def _library(context: dict[str, Any]) -> dict[str, Any]:
    library = context.get("library")
    if not isinstance(library, dict):
        return {}
    found = {"$lib": library.get("name"), "$lib_version": library.get("version")}
    return {k: v for k, v in found.items() if isinstance(v, str)}


def _context_properties(context: dict[str, Any], page_properties: dict[str, Any]) -> dict[str, Any]:
    """PostHog's names for what Segment's context says about the page, campaign and library.

    A page call's own properties fill in what `context.page` lacks (analytics.js sends both).
    """
    found = _library(context)
    given = context.get("page")
    page = given if isinstance(given, dict) else {}
    page = {key: page.get(key, page_properties.get(key)) for key in _PAGE_KEYS}
    page = {k: v for k, v in page.items() if isinstance(v, str) and v}
    if "url" in page:
        found["$current_url"] = page["url"]
        host, path = _host_and_path(page["url"])
        if host:
            found["$host"] = host
        if path:
            found["$pathname"] = path
    if "path" in page:
        found["$pathname"] = page["path"]
    if "referrer" in page:
        found["$referrer"] = page["referrer"]
        referring_domain, _ = _host_and_path(page["referrer"])
        if referring_domain:
            found["$referring_domain"] = referring_domain
    if "title" in page:
        found["$title"] = page["title"]
    campaign = context.get("campaign")
    if isinstance(campaign, dict):
        for key, name in _CAMPAIGN_KEYS.items():
            if isinstance(campaign.get(key), str) and campaign[key]:
                found[name] = campaign[key]
    if isinstance(context.get("userAgent"), str):
        found["$raw_user_agent"] = context["userAgent"]
    return found


def _host_and_path(url: str) -> tuple[str, str]:
    """The host and path of `url`; none for a URL the standard library cannot split
    (`http://[` is an unclosed IPv6 address): the URL itself is still kept."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "", ""
    return parts.netloc, parts.path
