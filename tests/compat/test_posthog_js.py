"""posthog-js 1.449.2, unmodified, in Chromium, on a page from another origin than idstitch.

Each test opens a page served by `page_server` (its own port, so every request to idstitch is
cross-origin), drives the SDK through `page.evaluate`, and reads the stitched persons back with
the secret key. Nothing sleeps a fixed time: the API is polled until the events are there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.compat.conftest import LiveServer, PageServer, events, eventually, person

# Three browser runs: cheap enough to run on both stores.
pytestmark = pytest.mark.both_stores

EVENT_PATHS = ("/e/", "/i/v0/e/")


def posthog_page(server: LiveServer, **options: Any) -> str:
    """A page that loads the SDK and calls `posthog.init` pointing at `server` with `options`.

    `opt_out_useragent_filter` is required: posthog-js drops every event when
    `navigator.webdriver` is true, as it is under Playwright (wire-formats.md §1.8).
    """
    config = {
        "api_host": server.base_url,
        "opt_out_useragent_filter": True,
        "request_queue_config": {"flush_interval_ms": 250},
        "person_profiles": "always",
        "autocapture": False,
        **options,
    }
    return f"""<!doctype html>
<html><head><title>idstitch compat</title><link rel="icon" href="data:,">
<script src="/posthog.js"></script>
<script>
  const config = {json.dumps(config)};
  config.loaded = () => {{ window.__phReady = true }};
  posthog.init({json.dumps(server.token)}, config);
</script></head><body><h1>Pricing</h1></body></html>"""


@dataclass
class Tab:
    """One page of one browser context, with what it sent to idstitch and what went wrong."""

    page: Any
    sent: list[Any] = field(default_factory=list)
    statuses: list[tuple[str, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def run(self, script: str) -> Any:
        return self.page.evaluate(script)

    def distinct_id(self) -> str:
        return self.run("posthog.get_distinct_id()")

    def paths(self) -> list[str]:
        return [urlsplit(request.url).path for request in self.sent]

    def event_requests(self) -> list[Any]:
        return [r for r in self.sent if r.method == "POST" and urlsplit(r.url).path in EVENT_PATHS]


def open_tab(context: Any, url: str, server: LiveServer) -> Tab:
    page = context.new_page()
    tab = Tab(page)

    def on_request(request: Any) -> None:
        if request.url.startswith(server.base_url):
            tab.sent.append(request)

    def on_response(response: Any) -> None:
        if response.url.startswith(server.base_url):
            tab.statuses.append((response.url, response.status))

    page.on("request", on_request)
    page.on("response", on_response)
    page.on("requestfailed", lambda request: tab.problems.append(f"request failed: {request.url} {request.failure}"))
    page.on("pageerror", lambda error: tab.problems.append(f"page error: {error}"))
    page.on("console", lambda message: message.type == "error" and tab.problems.append(f"console: {message.text}"))
    page.goto(url)
    page.wait_for_function("window.__phReady === true")
    return tab


def stitched(live_api: httpx.Client, distinct_id: str, ids: list[str], names: list[str]) -> dict[str, Any] | None:
    """The person owning `distinct_id` once it owns exactly `ids` and has (at least) these events."""
    found = person(live_api, distinct_id)
    if found is None or sorted(found["distinct_ids"]) != sorted(ids):
        return None
    seen = [e["event"] for e in events(live_api, found["id"])]
    if any(seen.count(name) < names.count(name) for name in set(names)):
        return None
    return found


@pytest.fixture
def context(browser: Any) -> Any:
    context = browser.new_context()
    yield context
    context.close()


def test_anonymous_visit_identify_then_reset_keeps_two_users_on_one_browser_apart(
    context, page_server: PageServer, live_server: LiveServer, live_api: httpx.Client
):
    # Flags and remote config are left on: the SDK loads /array/<token>/config.js, negotiates
    # gzip from it, and must run without a single error.
    url = page_server.add("flags-on", posthog_page(live_server, capture_pageview=True, debug=True))
    tab = open_tab(context, url, live_server)
    ada_device = tab.distinct_id()
    tab.run("posthog.capture('viewed pricing', {plan: 'pro'})")
    tab.run("posthog.identify('user-ada', {name: 'Ada Lovelace', email: 'ada@example.com'}, {first_plan: 'pro'})")
    ada = eventually(
        lambda: stitched(live_api, "user-ada", [ada_device, "user-ada"], ["$pageview", "viewed pricing", "$identify"]),
        what="Ada's anonymous visit stitched to user-ada",
    )
    assert ada["is_identified"] is True
    assert ada["user_ids"] == ["user-ada"]
    assert {k: ada["properties"][k] for k in ("name", "email", "first_plan")} == {
        "name": "Ada Lovelace", "email": "ada@example.com", "first_plan": "pro"
    }
    assert ada["properties"]["$initial_current_url"] == url

    # Ada logs out; Bob uses the same browser. reset() mints a new anonymous id and sends nothing.
    tab.run("posthog.reset()")
    bob_device = tab.distinct_id()
    assert bob_device != ada_device
    tab.run("posthog.capture('$pageview')")
    tab.run("posthog.identify('user-bob', {name: 'Bob'})")
    bob = eventually(
        lambda: stitched(live_api, "user-bob", [bob_device, "user-bob"], ["$pageview", "$identify"]),
        what="Bob's visit stitched to user-bob",
    )
    assert bob["id"] != ada["id"]
    assert bob["properties"]["name"] == "Bob"
    after = person(live_api, "user-ada")
    assert after is not None
    assert sorted(after["distinct_ids"]) == sorted([ada_device, "user-ada"])
    assert after["properties"]["name"] == "Ada Lovelace"

    assert f"/array/{live_server.token}/config.js" in tab.paths()
    # Remote config offered gzip, so events went out gzipped as text/plain with no header at all.
    for request in tab.event_requests():
        assert request.post_data_buffer[:2] == b"\x1f\x8b", request.url
    assert [s for s in tab.statuses if s[1] != 200] == []
    assert not any("retry_count" in r.url for r in tab.sent)
    assert tab.problems == []


def test_a_second_device_of_the_same_user_ends_as_one_person_with_both_histories(
    browser, page_server: PageServer, live_server: LiveServer, live_api: httpx.Client
):
    url = page_server.add("two-devices", posthog_page(live_server, advanced_disable_flags=True))
    laptop_context, phone_context = browser.new_context(), browser.new_context()
    try:
        laptop = open_tab(laptop_context, url, live_server)
        laptop_id = laptop.distinct_id()
        laptop.run("posthog.capture('$pageview'); posthog.capture('added to cart')")
        laptop.run("posthog.identify('user-ada', {name: 'Ada'})")
        eventually(
            lambda: stitched(
                live_api, "user-ada", [laptop_id, "user-ada"], ["$pageview", "added to cart", "$identify"]
            ),
            what="the laptop's history on user-ada",
        )

        phone = open_tab(phone_context, url, live_server)
        phone_id = phone.distinct_id()
        assert phone_id != laptop_id
        phone.run("posthog.capture('$pageview'); posthog.capture('checked out')")
        phone.run("posthog.identify('user-ada', {plan: 'pro'})")
        ada = eventually(
            lambda: stitched(
                live_api, phone_id, [laptop_id, phone_id, "user-ada"],
                ["$pageview", "added to cart", "$identify", "$pageview", "checked out", "$identify"],
            ),
            what="both devices' histories on one person",
        )
    finally:
        laptop_context.close()
        phone_context.close()

    assert ada["properties"]["name"] == "Ada"
    assert ada["properties"]["plan"] == "pro"
    by_device = {e["distinct_id"] for e in events(live_api, ada["id"]) if e["event"] == "$pageview"}
    assert by_device == {laptop_id, phone_id}
    assert laptop.problems == phone.problems == []


def test_uncompressed_json_from_the_sdk_passes_the_cors_preflight(
    context, page_server: PageServer, live_server: LiveServer, live_api: httpx.Client
):
    # `application/json` is not a CORS-simple content type: Chromium sends OPTIONS first and only
    # then the POST. The events arriving at all is the proof the preflight was answered.
    url = page_server.add("json", posthog_page(live_server, advanced_disable_flags=True, disable_compression=True))
    tab = open_tab(context, url, live_server)
    anonymous = tab.distinct_id()
    tab.run("posthog.capture('$pageview')")
    tab.run("posthog.identify('user-cy', {name: 'Cy'})")
    tab.run("posthog.setPersonProperties({plan: 'team'}, {signup_source: 'ad'})")
    tab.run("posthog.alias('crm-cy')")
    cy = eventually(
        lambda: stitched(
            live_api, "crm-cy", [anonymous, "crm-cy", "user-cy"], ["$pageview", "$identify", "$set", "$create_alias"]
        ),
        what="Cy's ids and events",
    )
    assert {k: cy["properties"][k] for k in ("name", "plan", "signup_source")} == {
        "name": "Cy", "plan": "team", "signup_source": "ad"
    }
    sent = tab.event_requests()
    assert sent
    for request in sent:
        assert request.headers["content-type"].startswith("application/json"), request.url
        assert json.loads(request.post_data)["api_key"] == live_server.token
    assert [s for s in tab.statuses if s[1] != 200] == []
    assert tab.problems == []


def test_the_landing_page_survives_a_login_on_another_page_and_no_campaign_key_is_stored_as_null(
    context, page_server: PageServer, live_server: LiveServer, live_api: httpx.Client
):
    # identified_only: the anonymous pages make no person; posthog-js sends the landing page it
    # stored as `$set_once` `$initial_*` with the login page's `$identify`.
    options = {"person_profiles": "identified_only", "advanced_disable_flags": True, "capture_pageview": True}
    landing = page_server.add("landing", posthog_page(live_server, **options)) + "?utm_source=ads&utm_campaign=spring"
    login = page_server.add("login", posthog_page(live_server, **options))
    tab = open_tab(context, landing, live_server)
    device = tab.distinct_id()
    tab.run("posthog.capture('viewed pricing')")
    # A visitor reads the page before moving on: leaving at once would abort posthog-js's send.
    eventually(
        lambda: live_api.post("/api/events/query", json={"distinct_id": device, "events": ["viewed pricing"]}).json()["results"],
        what="the landing page's events stored",
    )
    tab.page.goto(login)
    tab.page.wait_for_function("window.__phReady === true")
    tab.run("posthog.identify('user-ada', {name: 'Ada'})")
    ada = eventually(
        lambda: stitched(live_api, "user-ada", [device, "user-ada"], ["$pageview", "viewed pricing", "$identify"]),
        what="Ada's visit stitched to user-ada",
    )
    properties = ada["properties"]
    assert properties["$initial_current_url"] == landing
    assert (properties["$initial_utm_source"], properties["$initial_utm_campaign"]) == ("ads", "spring")
    assert properties["$current_url"].startswith(login)
    assert [key for key, value in properties.items() if value is None] == [], " ".join(f"{k}={v!r}" for k, v in sorted(properties.items()))
    # The device posthog-js describes, latest and first.
    assert properties["$browser"] == properties["$initial_browser"]
    assert properties["$device_type"] == "Desktop" and properties["$os"] == properties["$initial_os"]
    assert tab.problems == []
