"""First-touch attributes: where a person first came from, as set_once operations."""

from __future__ import annotations

from typing import Any

import pytest

from idstitch.attributes import NO_OPS, AttributeOps
from idstitch.first_touch import FIRST_TOUCH_KEYS, first_touch_ops


def test_page_referrer_and_campaign_properties_become_initial_attributes() -> None:
    properties = {
        "$referrer": "https://news.ycombinator.com/",
        "$referring_domain": "news.ycombinator.com",
        "$current_url": "https://shop.example/?utm_source=hn",
        "$host": "shop.example",
        "$pathname": "/",
        "utm_source": "hn",
        "gclid": "abc",
        "$browser": "Firefox",  # not about where the visitor came from
    }
    assert first_touch_ops(properties, "$pageview") == AttributeOps(
        set_once={
            "$initial_referrer": "https://news.ycombinator.com/",
            "$initial_referring_domain": "news.ycombinator.com",
            "$initial_current_url": "https://shop.example/?utm_source=hn",
            "$initial_host": "shop.example",
            "$initial_pathname": "/",
            "$initial_utm_source": "hn",
            "$initial_gclid": "abc",
        }
    )


@pytest.mark.parametrize(
    "properties, name",
    [
        pytest.param({"$referrer": None, "utm_source": None}, "$pageview", id="null-values"),
        pytest.param({"$browser": "Firefox"}, "$pageview", id="no-first-touch-keys"),
        pytest.param({}, "signed_up", id="no-properties"),
        pytest.param({"$current_url": "https://shop.example/"}, "$snapshot", id="snapshot"),
        pytest.param({"$current_url": "https://shop.example/"}, "$exception", id="exception"),
        pytest.param({"$current_url": "https://shop.example/"}, "$import", id="import"),
    ],
)
def test_nothing_is_implied_by_null_values_unrelated_keys_or_non_visit_events(
    properties: dict[str, Any], name: str
) -> None:
    assert first_touch_ops(properties, name) is NO_OPS


def test_every_first_touch_key_maps_to_its_initial_attribute() -> None:
    assert all(
        attribute == f"$initial_{name.removeprefix('$')}" for name, attribute in FIRST_TOUCH_KEYS.items()
    )
    assert {"utm_campaign", "fbclid", "msclkid"} <= set(FIRST_TOUCH_KEYS)
