"""Automatic person attributes: latest (`set`) and first (`set_once` `$initial_*`) device, page
and campaign values, as PostHog sets them (posthog-reference.md §5.4)."""

from __future__ import annotations

from typing import Any

import pytest

from idstitch.attributes import NO_OPS, AttributeOps, PersonAttributes
from idstitch.first_touch import FIRST_TOUCH_KEYS, automatic_ops, explicit_ops, lifted_properties
from tests.core.harness import identify, split, track

NOBODY = PersonAttributes()


def implied(properties: dict[str, Any], name: str = "$pageview", explicit: AttributeOps = NO_OPS) -> AttributeOps:
    return automatic_ops(lifted_properties(properties, name), explicit, NOBODY)


def test_device_page_and_campaign_properties_become_latest_and_initial_attributes() -> None:
    properties = {
        "$browser": "Firefox",
        "$os": "Linux",
        "$device_type": "Desktop",
        "$referrer": "https://news.ycombinator.com/",
        "$current_url": "https://shop.example/?utm_source=hn",
        "$host": "shop.example",
        "utm_source": "hn",
        "$title": "Shop",  # not about the person
    }
    assert implied(properties) == AttributeOps(
        set_once={
            "$initial_browser": "Firefox",
            "$initial_os": "Linux",
            "$initial_device_type": "Desktop",
            "$initial_referrer": "https://news.ycombinator.com/",
            "$initial_current_url": "https://shop.example/?utm_source=hn",
            "$initial_host": "shop.example",
            "$initial_utm_source": "hn",
        },
        set={
            "$browser": "Firefox",
            "$os": "Linux",
            "$device_type": "Desktop",
            "$referrer": "https://news.ycombinator.com/",
            "$current_url": "https://shop.example/?utm_source=hn",
            "utm_source": "hn",
        },
    )


def test_os_name_stands_in_for_a_missing_os() -> None:
    assert implied({"$os_name": "iOS"}) == AttributeOps(set_once={"$initial_os": "iOS"}, set={"$os": "iOS"})


@pytest.mark.parametrize(
    "properties, name",
    [
        pytest.param({"$referrer": None, "utm_source": None}, "$pageview", id="null-values"),
        pytest.param({"$title": "Shop"}, "$pageview", id="no-person-keys"),
        pytest.param({}, "signed_up", id="no-properties"),
        pytest.param({"$current_url": "https://shop.example/"}, "$snapshot", id="snapshot"),
        pytest.param({"$current_url": "https://shop.example/"}, "$exception", id="exception"),
        pytest.param({"$current_url": "https://shop.example/"}, "$import", id="import"),
    ],
)
def test_nothing_is_implied_by_null_values_unrelated_keys_or_non_visit_events(
    properties: dict[str, Any], name: str
) -> None:
    assert implied(properties, name) is NO_OPS


def test_an_explicit_value_of_the_event_is_not_derived_again() -> None:
    # posthog-js on the login page: the landing page it stored, and no campaign at landing.
    explicit = AttributeOps(
        set_once={"$initial_current_url": "https://shop.example/?utm_source=ads", "$initial_utm_source": None},
        set={"$browser": "Chrome 125"},
    )
    properties = {"$current_url": "https://shop.example/login?utm_source=mail", "utm_source": "mail", "$browser": "Chrome"}
    assert implied(properties, "$identify", explicit) == AttributeOps(
        set_once={"$initial_browser": "Chrome"},
        set={"$current_url": "https://shop.example/login?utm_source=mail", "utm_source": "mail"},
    )


def test_first_touch_keys_sent_as_null_are_dropped_and_other_nulls_kept() -> None:
    ops = AttributeOps(set_once={"$initial_utm_term": None, "$initial_gclid": None, "plan": None, "$initial_referrer": "x"})
    assert explicit_ops(ops) == AttributeOps(set_once={"plan": None, "$initial_referrer": "x"})
    untouched = AttributeOps(set_once={"plan": None})
    assert explicit_ops(untouched) is untouched


def test_every_first_touch_key_maps_to_its_initial_attribute() -> None:
    assert all(
        attribute == f"$initial_{name.removeprefix('$')}" for name, attribute in FIRST_TOUCH_KEYS.items()
    )
    assert {"utm_campaign", "fbclid", "msclkid", "$browser", "$os_version", "$referring_domain"} <= set(FIRST_TOUCH_KEYS)


# -- on a real store ---------------------------------------------------------------------------


def test_the_login_page_does_not_replace_the_landing_page_posthog_js_sends(make_engine) -> None:
    engine = make_engine(person_profiles="identified_only")
    landing = "https://shop.example/?utm_source=ads"
    engine.apply(
        track("anon-1", minute=0, properties={"$current_url": landing, "utm_source": "ads"}, process_person=False),
        identify(
            "user-1", "anon-1", minute=5,
            properties={"$current_url": "https://shop.example/login"},
            set_once={"$initial_current_url": landing, "$initial_utm_source": "ads", "$initial_utm_medium": None,
                      "$initial_gclid": None},
        ),
    )
    properties = engine.properties("user-1")
    assert properties["$initial_current_url"] == landing
    assert properties["$current_url"] == "https://shop.example/login"
    assert properties["$initial_utm_source"] == "ads"
    assert "$initial_utm_medium" not in properties and "$initial_gclid" not in properties
    stored = engine.conn.execute("SELECT key FROM person_attributes WHERE value IS NULL OR value = 'null'").fetchall()
    assert stored == []


def test_first_touch_nulls_do_not_block_a_later_real_value(engine) -> None:
    engine.apply(track("anon-1", "$set", minute=0, set_once={"$initial_utm_source": None}))
    engine.apply(track("anon-1", minute=1, properties={"utm_source": "mail"}))
    assert engine.properties("anon-1")["$initial_utm_source"] == "mail"


def attribute_rows(engine, key: str) -> list[tuple[Any, ...]]:
    return engine.conn.execute(
        "SELECT value, kind, time, seq, event_uuid FROM person_attributes WHERE key = ?", (key,)
    ).fetchall()


def test_latest_values_follow_the_events_and_an_unchanged_value_is_not_written_again(engine) -> None:
    chrome = {"$browser": "Chrome", "$current_url": "https://shop.example/"}
    engine.apply(track("anon-1", minute=0, uuid="first", properties=chrome))
    browser, page = attribute_rows(engine, "$browser"), attribute_rows(engine, "$current_url")
    # PostHog (§5.5): an ordinary event whose only change is a noisy key the person has writes nothing.
    engine.apply(track("anon-1", minute=1, uuid="page-a", properties={**chrome, "$current_url": "https://shop.example/a"}))
    assert (attribute_rows(engine, "$browser"), attribute_rows(engine, "$current_url")) == (browser, page)
    # Any other change writes the event's noisy values with it; an unchanged value is still not rewritten.
    engine.apply(track("anon-1", minute=2, uuid="pro", properties={**chrome, "$current_url": "https://shop.example/b"},
                       set={"plan": "pro"}))
    assert attribute_rows(engine, "$current_url")[0][-1] == "pro"
    assert attribute_rows(engine, "$browser") == browser
    # A `$set` event always writes.
    engine.apply(track("anon-1", "$set", minute=3, properties={"$browser": "Firefox"}))
    assert engine.properties("anon-1") == {
        "$browser": "Firefox",
        "$initial_browser": "Chrome",
        "$current_url": "https://shop.example/b",
        "$initial_current_url": "https://shop.example/",
        "plan": "pro",
    }


def test_a_noisy_key_the_person_lacks_is_written_and_initial_values_are_never_quiet(engine) -> None:
    engine.apply(track("anon-1", minute=1, properties={"$browser": "Chrome"}))
    engine.apply(track("anon-1", minute=2, properties={"$browser": "Chrome", "$current_url": "https://shop.example/"}))
    # An older page view arriving late moves the first-touch value: that is written, with the rest.
    engine.apply(track("anon-1", minute=0, properties={"$browser": "Safari", "$current_url": "https://shop.example/old"}))
    assert engine.properties("anon-1") == {
        "$browser": "Chrome",
        "$initial_browser": "Safari",
        "$current_url": "https://shop.example/",
        "$initial_current_url": "https://shop.example/old",
    }


def test_split_re_derives_latest_and_first_values_from_each_ids_events(engine) -> None:
    engine.apply(
        track("anon-1", minute=0, properties={"$browser": "Safari"}),
        identify("user-1", "anon-1", minute=5, properties={"$browser": "Chrome"}),
    )
    assert engine.properties("user-1") == {"$browser": "Chrome", "$initial_browser": "Safari"}
    engine.apply(split(engine.person_id("user-1")))
    assert engine.properties("anon-1") == {"$browser": "Safari", "$initial_browser": "Safari"}
    assert engine.properties("user-1") == {"$browser": "Chrome", "$initial_browser": "Chrome"}


def test_an_event_without_person_properties_loads_nothing(engine) -> None:
    [result] = engine.apply(track("anon-1", properties={"$title": "Shop"}))
    assert (result.warnings, engine.properties("anon-1")) == ([], {})
