"""First-touch attributes: where a person first came from, filled in from event properties.

PostHog copies page, referrer and campaign properties of every event into `$set_once` as
`$initial_<name>`; Heap records the initial referrer, landing page and UTM parameters. We do the
same for the keys that say where a visitor came from, never with null values (PostHog's recent
rule). Since `set_once` keeps the earliest event's value, a late-arriving older page view still
wins, whatever order events come in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from idstitch.attributes import NO_OPS, AttributeOps

# event property -> person attribute
FIRST_TOUCH_KEYS: dict[str, str] = {
    "$referrer": "$initial_referrer",
    "$referring_domain": "$initial_referring_domain",
    "$current_url": "$initial_current_url",
    "$host": "$initial_host",
    "$pathname": "$initial_pathname",
    **{
        name: f"$initial_{name}"
        for name in (
            "utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term", "utm_name",
            "gclid", "gad_source", "gclsrc", "dclid", "gbraid", "wbraid", "fbclid", "msclkid",
            "twclid", "li_fat_id", "mc_cid", "igshid", "ttclid", "rdt_cid", "irclid", "_kx",
            "epik", "qclid", "sccid",
        )
    },
}

# Events that describe no visit of a page: their properties say nothing about first touch.
_SKIPPED_EVENTS = frozenset({"$snapshot", "$performance_event", "$exception", "$$heatmap", "$import"})


def first_touch_ops(properties: Mapping[str, Any], event_name: str = "") -> AttributeOps:
    """The `set_once` operations an event's own properties imply."""
    if event_name in _SKIPPED_EVENTS:
        return NO_OPS
    found = {
        attribute: properties[name]
        for name, attribute in FIRST_TOUCH_KEYS.items()
        if properties.get(name) is not None
    }
    return AttributeOps(set_once=found) if found else NO_OPS
