"""Clients that send only a user agent and a URL still give the person PostHog's automatic
attributes: browser, OS and device type (parsed with ua-parser) and the URL's campaign keys,
latest and first (posthog-reference.md §5.4)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import idstitch
from idstitch.ingest.device import campaign_properties, device_properties
from tests.compat.conftest import LiveServer, eventually, person
from tests.compat.test_python_clients import posthog_client, segment_client

pytestmark = pytest.mark.both_stores

IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
          " Version/17.4 Mobile/15E148 Safari/604.1")
WINDOWS_CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
                  " Chrome/124.0.0.0 Safari/537.36")
ANDROID_TABLET = ("Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko)"
                  " Chrome/124.0.0.0 Safari/537.36")
IPHONE_PROPERTIES = {"$browser": "Mobile Safari", "$browser_version": 17.4, "$os": "iOS", "$os_version": "17.4",
                     "$device_type": "Mobile"}


@pytest.mark.parametrize(
    "user_agent, expected",
    [
        pytest.param(IPHONE, IPHONE_PROPERTIES, id="iphone"),
        pytest.param(WINDOWS_CHROME, {"$browser": "Chrome", "$browser_version": 124, "$os": "Windows",
                                      "$os_version": "10", "$device_type": "Desktop"}, id="windows-chrome"),
        pytest.param(ANDROID_TABLET, {"$browser": "Chrome", "$browser_version": 124, "$os": "Android",
                                      "$os_version": "13", "$device_type": "Tablet"}, id="android-tablet"),
        pytest.param("python-httpx/0.28.1", {}, id="an-http-library-is-no-device"),
        pytest.param("x" * 5000, {}, id="too-long"),
    ],
)
def test_a_user_agent_reads_as_posthog_js_would_describe_the_device(user_agent: str, expected: dict[str, Any]):
    assert device_properties(user_agent) == expected


def test_campaign_keys_come_from_the_query_of_a_url():
    url = "https://shop.example/p?utm_source=news&utm_medium=&gclid=g-1&utm_source=again&q=1"
    assert campaign_properties(url) == {"utm_source": "news", "gclid": "g-1"}
    assert campaign_properties("http://[::1/broken?utm_source=x") == {}


def device_person(live_api: httpx.Client, distinct_id: str) -> dict[str, Any]:
    return eventually(
        lambda: (found := person(live_api, distinct_id)) and "$browser" in found["properties"] and found,
        what=f"{distinct_id}'s automatic attributes",
    )["properties"]


def expect_iphone_from_the_newsletter(properties: dict[str, Any]) -> None:
    for key, value in {**IPHONE_PROPERTIES, "utm_source": "newsletter", "utm_campaign": "spring"}.items():
        initial = f"$initial_{key.removeprefix('$')}"
        assert (properties.get(key), properties.get(initial)) == (value, value), key


def test_segment_context_user_agent_and_page_url(live_server: LiveServer, live_api: httpx.Client):
    errors: list[Any] = []
    client = segment_client(live_server, errors, sync_mode=True)
    client.page(anonymous_id="phone-cookie", name="Pricing", context={
        "userAgent": IPHONE, "page": {"url": "https://shop.example/pricing?utm_source=newsletter&utm_campaign=spring"},
    })  # sync mode: posted before it returns (and no consumer thread to shut down)
    assert errors == []
    expect_iphone_from_the_newsletter(device_person(live_api, "phone-cookie"))


def test_posthog_python_server_side_event_with_the_visitors_user_agent_and_url(
    live_server: LiveServer, live_api: httpx.Client
):
    errors: list[Any] = []
    client = posthog_client(live_server, errors, sync_mode=True)
    client.capture("$pageview", distinct_id="phone-cookie", properties={
        "$raw_user_agent": IPHONE, "$current_url": "https://shop.example/?utm_source=newsletter&utm_campaign=spring",
    })
    client.shutdown()
    assert errors == []
    expect_iphone_from_the_newsletter(device_person(live_api, "phone-cookie"))


def test_idstitch_client_server_side_with_the_visitors_user_agent_and_url(live_server: LiveServer, live_api: httpx.Client):
    client = idstitch.Client(live_server.base_url, ingest_token=live_server.token, flush_interval=0.05)
    client.track("phone-cookie", "$pageview", {
        "$raw_user_agent": IPHONE, "$current_url": "https://shop.example/?utm_source=newsletter&utm_campaign=spring",
    })
    assert client.flush(timeout=10)
    client.shutdown()
    expect_iphone_from_the_newsletter(device_person(live_api, "phone-cookie"))
    # A later visit from another device, from an ad: the latest values change, the first stay.
    # (A visit changing only device and page keys would write nothing, as in PostHog: §5.5.)
    client = idstitch.Client(live_server.base_url, ingest_token=live_server.token, flush_interval=0.05)
    client.track("phone-cookie", "$pageview", {"$raw_user_agent": WINDOWS_CHROME, "$current_url": "https://shop.example/?utm_source=ads"})
    assert client.flush(timeout=10)
    client.shutdown()
    properties = eventually(
        lambda: (found := person(live_api, "phone-cookie")) and found["properties"]["$browser"] == "Chrome" and found,
        what="the second visit",
    )["properties"]
    assert (properties["$os"], properties["$initial_os"], properties["$initial_utm_source"]) == ("Windows", "iOS", "newsletter")
    assert properties["utm_source"] == "ads"
