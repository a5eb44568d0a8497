"""Segment messages into commands (ingest/segment.py), without a server."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from idstitch.attributes import NO_OPS, AttributeOps
from idstitch.commands import Alias, Event, Identify, Track
from idstitch.ingest import segment
from idstitch.outcomes import Rejection

RECEIVED = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
SENT = "2026-03-01T12:00:00+00:00"
LIBRARY = {"library": {"name": "analytics-python", "version": "2.4.0"}}
LIB = {"$lib": "analytics-python", "$lib_version": "2.4.0"}


def message(kind: str, **fields: Any) -> dict[str, Any]:
    """A message as segment-analytics-python 2.4.0 sends it: both id keys present, one null."""
    return {
        "type": kind,
        "messageId": f"msg-{kind}",
        "timestamp": "2026-03-01T11:59:59+00:00",
        "context": LIBRARY,
        "integrations": {},
        "userId": None,
        "anonymousId": None,
        **fields,
    }


def event(distinct_id: str, name: str, properties: dict[str, Any], ops: AttributeOps = NO_OPS, uuid: str = "") -> Event:
    return Event(
        uuid=uuid, distinct_id=distinct_id, name=name, timestamp=RECEIVED - timedelta(seconds=1),
        properties=properties, ops=ops,
    )


def command(raw: dict[str, Any]) -> Any:
    return segment.message_command(raw, datetime.fromisoformat(SENT), RECEIVED)


def test_identify_links_the_anonymous_id_and_sets_the_traits():
    raw = message("identify", userId="user-42", anonymousId="cookie-1", traits={"name": "Ada", "plan": "pro"})
    assert command(raw) == Identify(
        event("user-42", "$identify", LIB, AttributeOps(set={"name": "Ada", "plan": "pro"}), "msg-identify"),
        user_id="user-42",
        anonymous_id="cookie-1",
    )


def test_identify_without_a_user_id_sets_attributes_on_the_anonymous_visitor():
    raw = message("identify", anonymousId="cookie-1", traits={"theme": "dark"})
    assert command(raw) == Identify(
        event("cookie-1", "$identify", LIB, AttributeOps(set={"theme": "dark"}), "msg-identify"),
        user_id=None,
        anonymous_id="cookie-1",
    )


def test_alias_joins_the_previous_id_to_the_user_id():
    raw = message("alias", userId="user-42", previousId="crm-7")
    expected = Alias(event("user-42", "$create_alias", LIB, uuid="msg-alias"), target="user-42", source="crm-7")
    assert command(raw) == expected


def test_track_keeps_its_name_and_properties_and_prefers_the_user_id():
    raw = message("track", userId="user-42", anonymousId="cookie-1", event="Order Completed",
                  properties={"revenue": 42})
    assert command(raw) == Track(event("user-42", "Order Completed", {**LIB, "revenue": 42}, uuid="msg-track"))


@pytest.mark.parametrize(
    ("kind", "name", "extra"),
    [
        pytest.param("page", "$pageview", {}, id="page"),
        pytest.param("screen", "$screen", {"$screen_name": "Pricing"}, id="screen"),
    ],
)
def test_page_and_screen_become_pageview_and_screen_with_name_and_category(kind, name, extra):
    raw = message(kind, anonymousId="cookie-1", name="Pricing", category="Shop", properties={"plan": "pro"})
    expected = {**LIB, "plan": "pro", "name": "Pricing", "category": "Shop", **extra}
    assert command(raw) == Track(event("cookie-1", name, expected, uuid=f"msg-{kind}"))


def test_group_is_a_groupidentify_event_that_changes_no_attributes():
    raw = message("group", userId="user-42", groupId="acme", traits={"name": "Acme Inc"},
                  context={**LIBRARY, "page": {"url": "https://shop.example/"}})
    assert command(raw) == Track(
        event(
            "user-42", "$groupidentify",
            {**LIB, "$group_type": "group", "$group_key": "acme", "$group_set": {"name": "Acme Inc"}},
            uuid="msg-group",
        )
    )


def test_context_page_and_campaign_become_first_touch_properties():
    context = {
        **LIBRARY,
        "page": {"url": "https://shop.example/pricing?x=1", "referrer": "https://news.example/a", "title": "Pricing"},
        "campaign": {"name": "spring", "source": "newsletter", "medium": "email", "term": "", "content": None},
        "userAgent": "Mozilla/5.0",
        "sessionId": "session-9",
    }
    result = command(message("track", anonymousId="cookie-1", event="Viewed", context=context))
    assert result.event.properties == {
        **LIB,
        "$current_url": "https://shop.example/pricing?x=1",
        "$host": "shop.example",
        "$pathname": "/pricing",
        "$referrer": "https://news.example/a",
        "$referring_domain": "news.example",
        "$title": "Pricing",
        "utm_campaign": "spring",
        "utm_source": "newsletter",
        "utm_medium": "email",
        "$raw_user_agent": "Mozilla/5.0",
    }
    assert result.event.session_id == "session-9"


def test_a_page_call_without_context_page_uses_its_own_url_properties():
    raw = message("page", anonymousId="cookie-1", context={},
                  properties={"url": "https://shop.example/a", "path": "/a"})
    properties = command(raw).event.properties
    assert (properties["$current_url"], properties["$pathname"], properties["url"]) == (
        "https://shop.example/a", "/a", "https://shop.example/a"
    )


def test_the_senders_own_properties_win_over_those_derived_from_context():
    raw = message("track", anonymousId="cookie-1", event="Viewed", properties={"$current_url": "https://mine.example/"},
                  context={"page": {"url": "https://shop.example/"}})
    assert command(raw).event.properties["$current_url"] == "https://mine.example/"


def test_sent_at_corrects_a_skewed_client_clock():
    # The device clock is a day behind: its timestamp and sentAt are wrong by the same day.
    raw = message("track", anonymousId="cookie-1", event="Viewed", timestamp="2026-02-28T11:59:50Z")
    result = segment.message_command(raw, datetime(2026, 2, 28, 12, 0, 0, tzinfo=timezone.utc), RECEIVED)
    assert result.event.timestamp == RECEIVED - timedelta(seconds=10)


def test_a_message_posted_alone_carries_its_own_sent_at():
    raw = message("track", anonymousId="cookie-1", event="Viewed", timestamp="2026-02-28T11:59:50Z",
                  sentAt="2026-02-28T12:00:00Z")
    decoded = segment.decode_single(raw, "track", RECEIVED, "wk")
    assert decoded.commands[0].event.timestamp == RECEIVED - timedelta(seconds=10)


def test_numeric_ids_become_their_decimal_text():
    result = command(message("track", userId=42, event="Viewed"))
    assert result.event.distinct_id == "42"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(message("track", event="Viewed"), "a message needs `userId` or `anonymousId`", id="no-ids"),
        pytest.param(message("identify", traits={"a": 1}), "a message needs `userId` or `anonymousId`",
                     id="identify-no-ids"),
        pytest.param(message("alias", userId="user-42"), "missing `previousId`", id="alias-no-previous"),
        pytest.param(message("alias", previousId="crm-7"), "alias needs `userId`", id="alias-no-user"),
        pytest.param(message("group", userId="user-42"), "missing `groupId`", id="group-no-group"),
        pytest.param(message("track", userId="user-42"), "`event` must be a non-empty string", id="track-no-name"),
        pytest.param(message("launch", userId="user-42"), "`type` must be one of identify, track, alias, page, "
                     "screen, group; got 'launch'", id="unknown-type"),
        pytest.param(message("track", userId=True, event="x"), "`userId`: distinct id must be a string or a number, "
                     "got boolean", id="boolean-id"),
        pytest.param(message("identify", userId="user-42", traits=["a"]), "`traits` must be an object",
                     id="bad-traits"),
        pytest.param(message("track", userId="u", event="x", timestamp="yesterday"), "`timestamp` 'yesterday' is not "
                     "an ISO-8601 time or epoch number within the years 1 to 9999 UTC", id="bad-time"),
        pytest.param("not a message", "a message must be a JSON object", id="not-an-object"),
    ],
)
def test_a_malformed_message_is_rejected_with_its_reason(raw, reason):
    assert command(raw) == Rejection(reason)


def test_a_batch_takes_the_header_key_over_the_body_write_key_and_keeps_bad_messages_apart():
    payload = {"batch": [message("track", anonymousId="a", event="x"), message("track", event="x")],
               "sentAt": SENT, "writeKey": "wk_body"}
    decoded = segment.decode_batch(payload, RECEIVED, "wk_header")
    assert decoded.token == "wk_header"
    assert decoded.indexes == [0]
    rejected = [(r.index, r.rejection.reason) for r in decoded.rejected]
    assert rejected == [(1, "a message needs `userId` or `anonymousId`")]
    assert segment.decode_batch(payload, RECEIVED, None).token == "wk_body"


def test_a_single_message_route_names_the_type_whatever_the_body_says():
    decoded = segment.decode_single({"type": "identify", "userId": "u", "event": "Viewed"}, "track", RECEIVED, None)
    assert decoded.commands[0] == Track(Event(decoded.commands[0].event.uuid, "u", "Viewed", RECEIVED))


@pytest.mark.parametrize(
    ("payload", "single"),
    [
        pytest.param({"messages": []}, False, id="batch-without-batch"),
        pytest.param([{"type": "track"}], False, id="bare-array"),
        pytest.param([{"type": "track"}], True, id="single-array"),
    ],
)
def test_a_body_that_is_no_segment_request_is_an_envelope_error(payload, single):
    with pytest.raises(segment.EnvelopeError, match="expected"):
        if single:
            segment.decode_single(payload, "track", RECEIVED, None)
        else:
            segment.decode_batch(payload, RECEIVED, None)
