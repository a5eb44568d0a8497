"""The real `posthog` (7.91.1) and `segment-analytics-python` (2.4.0) clients against a live idstitch.

Each test sends a realistic flow with the stock client pointed at idstitch — anonymous events,
identify with attributes, an alias, a second device — then reads the stitched person back
through `GET /api/persons?distinct_id=` with the secret key.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from posthog import Posthog
from segment.analytics import Client as SegmentClient

from tests.compat.conftest import LiveServer, events, eventually, person

pytestmark = pytest.mark.both_stores


def posthog_client(server: LiveServer, errors: list[Any], **options: Any) -> Posthog:
    # capture_mode v0 is the `/batch/` protocol; v1 is a different, opt-in wire format.
    return Posthog(
        project_api_key=server.token, host=server.base_url, capture_mode="v0",
        on_error=lambda error, batch: errors.append(error), **options,
    )


def segment_client(server: LiveServer, errors: list[Any], **options: Any) -> SegmentClient:
    return SegmentClient(
        write_key=server.token, host=server.base_url, on_error=lambda error, batch: errors.append(error), **options
    )


def send_posthog_flow(client: Posthog) -> None:
    client.capture(
        "$pageview", distinct_id="laptop-cookie",
        properties={"$current_url": "https://shop.example/pricing?utm_source=newsletter", "utm_source": "newsletter"},
    )
    client.capture("viewed pricing", distinct_id="laptop-cookie", properties={"plan": "pro"})
    # posthog 7.x has no identify(): apps send the `$identify` event themselves.
    client.capture(
        "$identify", distinct_id="user-42",
        properties={"$anon_distinct_id": "laptop-cookie", "$set": {"name": "Ada"}, "$set_once": {"first_plan": "free"}},
    )
    client.set(distinct_id="user-42", properties={"plan": "pro", "email": "ada@example.com"})
    client.set_once(distinct_id="user-42", properties={"signup_source": "newsletter"})
    client.alias(previous_id="user-42", distinct_id="crm-42")
    client.capture("$pageview", distinct_id="phone-cookie", properties={"$current_url": "https://shop.example/app"})
    client.capture("$identify", distinct_id="user-42", properties={"$anon_distinct_id": "phone-cookie"})
    client.group_identify("company", "acme", {"name": "Acme Inc"}, distinct_id="user-42")


def assert_posthog_person(live_api: httpx.Client) -> None:
    def complete() -> dict[str, Any] | None:
        found = person(live_api, "phone-cookie")
        if found is None or len(found["distinct_ids"]) < 4 or found["properties"].get("plan") != "pro":
            return None
        return found if len(events(live_api, found["id"])) >= 9 else None

    ada = eventually(complete, what="user-42 stitched from both devices")
    assert sorted(ada["distinct_ids"]) == ["crm-42", "laptop-cookie", "phone-cookie", "user-42"]
    assert ada["user_ids"] == ["user-42"]
    properties = ada["properties"]
    # "name" stays Ada: the group's name describes the group, never the person.
    assert {k: properties[k] for k in ("name", "email", "plan", "first_plan", "signup_source")} == {
        "name": "Ada", "email": "ada@example.com", "plan": "pro", "first_plan": "free", "signup_source": "newsletter"
    }
    assert properties["$initial_current_url"] == "https://shop.example/pricing?utm_source=newsletter"
    assert properties["$initial_utm_source"] == "newsletter"
    names = sorted(e["event"] for e in events(live_api, ada["id"]))
    assert names == sorted([
        "$pageview", "viewed pricing", "$identify", "$set", "$set_once", "$create_alias", "$pageview",
        "$identify", "$groupidentify",
    ])
    assert live_api.get("/api/warnings").json()["results"] == []


def test_posthog_python_in_sync_mode_stitches_a_user_across_devices(
    live_server: LiveServer, live_api: httpx.Client, caplog: pytest.LogCaptureFixture
):
    errors: list[Any] = []
    client = posthog_client(live_server, errors, sync_mode=True)
    send_posthog_flow(client)
    client.shutdown()
    # In sync mode a failed post is logged, not handed to on_error.
    assert [r.getMessage() for r in caplog.records if r.name.startswith("posthog") and r.levelname == "ERROR"] == []
    assert errors == []
    assert_posthog_person(live_api)


def test_posthog_python_batched_and_gzipped(live_server: LiveServer, live_api: httpx.Client):
    errors: list[Any] = []
    client = posthog_client(live_server, errors, gzip=True, flush_at=4, flush_interval=0.2)
    send_posthog_flow(client)
    client.flush()
    client.shutdown()
    assert errors == []
    assert_posthog_person(live_api)


@pytest.mark.parametrize(
    "rule, identified", [pytest.param("user_id", True, id="user-id"), pytest.param("plain_event", False, id="plain-event")]
)
def test_posthog_python_identify_from_a_server_follows_the_projects_rule(
    live_server: LiveServer, live_api: httpx.Client, rule: str, identified: bool
):
    assert live_api.patch("/api/project/settings", json={"identify_without_anonymous_id": rule}).status_code == 200
    errors: list[Any] = []
    client = posthog_client(live_server, errors, sync_mode=True)
    # A backend that knows only the user: no anonymous id to join.
    client.capture("$identify", distinct_id="user-7", properties={"$set": {"plan": "team"}})
    client.shutdown()
    assert errors == []
    found = eventually(lambda: person(live_api, "user-7"), what="user-7's person")
    assert (found["is_identified"], found["user_ids"] == ["user-7"], found["properties"]["plan"]) == (
        identified, identified, "team"
    )


def test_posthog_python_with_a_wrong_key_gets_401_and_stores_nothing(live_server: LiveServer, live_api: httpx.Client):
    errors: list[Any] = []
    client = Posthog(project_api_key="phc_wrong", host=live_server.base_url, capture_mode="v0",
                     on_error=lambda error, batch: errors.append(error))
    client.capture("$pageview", distinct_id="anon-1")
    client.flush()
    client.shutdown()
    # A 4xx is not retried: one attempt, one error carrying our `detail`.
    assert [(e.status, e.message) for e in errors] == [(401, "Project token is not valid")]
    assert live_api.get("/api/persons", params={"distinct_id": "anon-1"}).status_code == 404


def send_segment_flow(client: SegmentClient) -> None:
    page_context = {
        "page": {"url": "https://shop.example/pricing", "path": "/pricing", "referrer": "https://news.example/"},
        "campaign": {"source": "newsletter", "medium": "email", "name": "spring"},
    }
    client.page(anonymous_id="laptop-cookie", category="Shop", name="Pricing", context=page_context)
    client.track(anonymous_id="laptop-cookie", event="Viewed pricing", properties={"plan": "pro"})
    client.identify(user_id="user-42", anonymous_id="laptop-cookie", traits={"name": "Ada", "email": "ada@example.com"})
    client.alias(previous_id="crm-42", user_id="user-42")
    client.group(user_id="user-42", group_id="acme", traits={"name": "Acme Inc"})
    # Hotjar's identify(null, attributes): a visitor who never logs in still gets attributes.
    client.identify(anonymous_id="tablet-cookie", traits={"theme": "dark"})
    client.screen(anonymous_id="phone-cookie", name="Home", category="App")
    client.track(anonymous_id="phone-cookie", event="Opened app")
    client.identify(user_id="user-42", anonymous_id="phone-cookie", traits={"plan": "pro"})


def assert_segment_persons(live_api: httpx.Client) -> None:
    def complete() -> dict[str, Any] | None:
        found = person(live_api, "phone-cookie")
        if found is None or len(found["distinct_ids"]) < 4 or found["properties"].get("plan") != "pro":
            return None
        return found if len(events(live_api, found["id"])) >= 8 else None

    ada = eventually(complete, what="user-42 stitched from both devices")
    assert sorted(ada["distinct_ids"]) == ["crm-42", "laptop-cookie", "phone-cookie", "user-42"]
    properties = ada["properties"]
    assert {k: properties[k] for k in ("name", "email", "plan")} == {
        "name": "Ada", "email": "ada@example.com", "plan": "pro"
    }
    assert {k: properties[k] for k in properties if k.startswith("$initial_")} == {
        "$initial_current_url": "https://shop.example/pricing",
        "$initial_host": "shop.example",
        "$initial_pathname": "/pricing",
        "$initial_referrer": "https://news.example/",
        "$initial_referring_domain": "news.example",
        "$initial_utm_source": "newsletter",
        "$initial_utm_medium": "email",
        "$initial_utm_campaign": "spring",
    }
    history = events(live_api, ada["id"])
    assert sorted(e["event"] for e in history) == sorted([
        "$pageview", "Viewed pricing", "$identify", "$create_alias", "$groupidentify", "$screen", "Opened app",
        "$identify",
    ])
    pageview = next(e for e in history if e["event"] == "$pageview")
    assert (pageview["properties"]["name"], pageview["properties"]["category"]) == ("Pricing", "Shop")
    assert pageview["properties"]["$lib"] == "analytics-python"
    group = next(e for e in history if e["event"] == "$groupidentify")
    assert (group["properties"]["$group_key"], group["properties"]["$group_set"]) == ("acme", {"name": "Acme Inc"})

    tablet = person(live_api, "tablet-cookie")
    assert tablet is not None
    assert (tablet["distinct_ids"], tablet["is_identified"], tablet["properties"]) == (
        ["tablet-cookie"], False, {"theme": "dark"}
    )
    assert live_api.get("/api/warnings").json()["results"] == []


def test_segment_python_in_sync_mode_stitches_a_user_across_devices(live_server: LiveServer, live_api: httpx.Client):
    errors: list[Any] = []
    client = segment_client(live_server, errors, sync_mode=True)
    # In sync mode each call posts before returning and raises on failure; there is no consumer
    # thread, and `shutdown()` would fail on it (segment-analytics-python 2.4.0).
    send_segment_flow(client)
    assert errors == []
    assert_segment_persons(live_api)


def test_segment_python_batched_and_gzipped(live_server: LiveServer, live_api: httpx.Client):
    errors: list[Any] = []
    client = segment_client(live_server, errors, gzip=True, upload_interval=0.1)
    send_segment_flow(client)
    client.flush()
    client.shutdown()
    assert errors == []
    assert_segment_persons(live_api)


@pytest.mark.parametrize("sync_mode", [pytest.param(True, id="sync"), pytest.param(False, id="batched")])
def test_segment_python_with_a_wrong_write_key_gets_401_and_stores_nothing(
    live_server: LiveServer, live_api: httpx.Client, sync_mode: bool
):
    errors: list[Any] = []
    client = SegmentClient(write_key="wk_wrong", host=live_server.base_url, sync_mode=sync_mode, max_retries=0,
                           on_error=lambda error, batch: errors.append(error))
    if sync_mode:
        with pytest.raises(Exception, match="401"):
            client.track(anonymous_id="anon-1", event="Viewed")
    else:
        client.track(anonymous_id="anon-1", event="Viewed")
        client.flush()
        client.shutdown()
        assert [(e.status, e.code) for e in errors] == [(401, "authentication_error")]
    assert live_api.get("/api/persons", params={"distinct_id": "anon-1"}).status_code == 404
