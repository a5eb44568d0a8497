"""`idstitch demo`: realistic data, the same for the same seed, through the real ingest path."""

from __future__ import annotations

from datetime import datetime, timezone

from idstitch.demo import batches, demo_events
from idstitch.ingest import posthog

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


def test_the_same_seed_gives_the_same_events():
    assert demo_events(NOW, visitors=40, seed=3) == demo_events(NOW, visitors=40, seed=3)
    assert demo_events(NOW, visitors=40, seed=3) != demo_events(NOW, visitors=40, seed=4)


def test_every_event_is_in_the_past_and_valid_posthog():
    events = demo_events(NOW, visitors=60)
    assert all(e["timestamp"] < "2026-11-20T12:00:00Z" for e in events)
    for received, body in batches(events, "phc_demo"):
        decoded = posthog.decode_request(body, received)
        assert decoded.rejected == []
        assert decoded.token == "phc_demo"


def test_the_scripted_people_are_there():
    events = demo_events(NOW, visitors=10)
    identifies = {(e["distinct_id"], e["properties"].get("$anon_distinct_id")) for e in events if e["event"] == "$identify"}
    assert {("user-ada", "anon-ada-laptop"), ("user-ada", "anon-ada-phone"), ("user-alan", "anon-shared-kiosk")} <= identifies
    assert any(e["event"] == "$merge_dangerously" for e in events)
