"""Automatic person attributes: the device, page and campaign of each event, latest and first.

PostHog lifts these event properties onto the person (posthog-reference.md §5.4): the latest
value under the property's own name (`$set`), and the first as `$initial_<name>` (`$set_once`);
Heap records the initial referrer, landing page and UTM parameters. We do the same, with three
rules of our own:

* An explicit value from the client wins. posthog-js sends the landing page it stored as
  `$set_once` `$initial_current_url` with the first event that has a person (often the login
  page's `$identify`): the login page must not take its place. A key the event's own `$set` or
  `$set_once` names is not derived.
* A campaign or first-touch attribute is never stored as null: null means the client saw none
  (posthog-js sends `utm_*: null` and `$initial_utm_*: null` for every campaign key a page lacked).
* An unchanged latest value is not written again, so a hundred page views in one browser do not
  rewrite the person a hundred times. (It keeps the time it was first set: an older event with
  another value that arrives late can then win. For device and page properties that is the
  price of not rewriting.)

And one of PostHog's (posthog-reference.md §5.5): an ordinary event whose only changes are new
values of noisy keys the person already has (`$current_url`, `$browser`, ...) writes nothing;
the next event that changes anything else, or an identify, writes its own values.

Since `set_once` keeps the earliest event's value, a late-arriving older page view still wins
the `$initial_*` keys, whatever order events come in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, NamedTuple

from idstitch.attributes import (
    NO_OPS,
    Applied,
    AttributeOps,
    AttributePolicy,
    OperationContext,
    PersonAttributes,
    apply_operations,
)

CAMPAIGN_KEYS = (
    "utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term", "utm_name",
    "gclid", "gad_source", "gclsrc", "dclid", "gbraid", "wbraid", "fbclid", "msclkid",
    "twclid", "li_fat_id", "mc_cid", "igshid", "ttclid", "rdt_cid", "irclid", "_kx",
    "epik", "qclid", "sccid", "oppref", "bfcid",
)
_CAMPAIGN = frozenset(CAMPAIGN_KEYS)
# Event properties kept on the person as their latest value and as their first.
LATEST_AND_FIRST = (
    "$browser", "$browser_version", "$os", "$os_version", "$device_type",
    "$current_url", "$pathname", "$referrer", "$referring_domain", *CAMPAIGN_KEYS,
)
# posthog-js sends `$initial_host` itself; the latest host says little more than the URL.
_FIRST_ONLY = ("$host",)

# event property -> first-touch person attribute
FIRST_TOUCH_KEYS: dict[str, str] = {
    name: f"$initial_{name.removeprefix('$')}" for name in (*LATEST_AND_FIRST, *_FIRST_ONLY)
}

# PostHog's filtered keys (§5.5) among those lifted: new values of these alone do not make an
# ordinary event write the person, when the person has them already. Campaign keys and
# `$initial_*` keys are never among them.
QUIET_KEYS = frozenset(LATEST_AND_FIRST) - _CAMPAIGN
# Events whose changes are always written.
_ALWAYS_WRITTEN = frozenset({"$identify", "$create_alias", "$merge_dangerously", "$set"})

# Events that describe no visit of a page: their properties say nothing about the person.
_SKIPPED_EVENTS = frozenset({"$snapshot", "$performance_event", "$exception", "$$heatmap", "$import"})


def lifted_properties(properties: Mapping[str, Any], event_name: str) -> dict[str, Any]:
    """The event properties that say something about the person (none for non-visit events)."""
    if event_name in _SKIPPED_EVENTS:
        return {}
    found = {name: properties[name] for name in FIRST_TOUCH_KEYS if properties.get(name) is not None}
    if "$os" not in found and properties.get("$os_name") is not None:
        found["$os"] = properties["$os_name"]  # PostHog: `$os_name` stands in for a missing `$os`
    if properties.get("$is_server") is True and "$raw_user_agent" not in properties:
        # A server SDK's `$os` is the server's (PostHog does not lift it); with the visitor's user
        # agent, ingest has put the visitor's there instead.
        found.pop("$os", None)
        found.pop("$os_version", None)
    return found


def automatic_ops(lifted: Mapping[str, Any], explicit: AttributeOps, current: PersonAttributes) -> AttributeOps:
    """The `set` and `set_once` operations of an event's `lifted_properties` for a person whose
    attributes are `current`; `explicit` is what the event itself asks for."""
    first = {
        FIRST_TOUCH_KEYS[name]: value
        for name, value in lifted.items()
        if FIRST_TOUCH_KEYS[name] not in explicit.set_once and FIRST_TOUCH_KEYS[name] not in explicit.set
    }
    latest = {
        name: value
        for name, value in lifted.items()
        if name not in _FIRST_ONLY and name not in explicit.set and not _holds(current, name, value)
    }
    return AttributeOps(set_once=first, set=latest) if first or latest else NO_OPS


def explicit_ops(ops: AttributeOps) -> AttributeOps:
    """The event's own operations, less the campaign and first-touch keys it sends as null."""
    if not any(_said_none(key, value) for part in (ops.set, ops.set_once) for key, value in part.items()):
        return ops
    return replace(
        ops,
        set={k: v for k, v in ops.set.items() if not _said_none(k, v)},
        set_once={k: v for k, v in ops.set_once.items() if not _said_none(k, v)},
    )


def _said_none(key: str, value: Any) -> bool:
    # posthog-js sends every campaign key it knows, null when the page had none: that is no value.
    return value is None and (key in _CAMPAIGN or key.startswith("$initial_"))


def _holds(attributes: PersonAttributes, key: str, value: Any) -> bool:
    current = attributes.items.get(key)
    return current is not None and current.is_present and type(current.value) is type(value) and current.value == value


class EventChanges(NamedTuple):
    """What one event did to a person's attributes."""

    changed: set[str]  # keys whose stored state changed
    explicit: Applied | None  # the event's own operations as applied (None: it had none)


def apply_event_operations(
    attributes: PersonAttributes,
    event_name: str,
    lifted: Mapping[str, Any],
    ops: AttributeOps,
    context: OperationContext,
    policy: AttributePolicy,
) -> EventChanges:
    """An event's automatic values, then its own operations, on a person's attributes in place:
    the one order ingestion and a split's re-derivation both follow."""
    auto = automatic_ops(lifted, ops, attributes) if policy.enabled and ops.automatic else NO_OPS
    earlier = {key: attributes.items.get(key) for key in auto.set}
    # Automatic attributes are ours, not the sender's: never a warning of their own.
    changed = apply_operations(attributes, auto, context, policy).changed if auto else set()
    explicit = apply_operations(attributes, explicit_ops(ops), context, policy) if ops.has_operations else None
    if changed and not (explicit and explicit.changed) and _quiet(event_name, changed, earlier):
        attributes.restore(earlier)
        changed = set()
    return EventChanges(changed | explicit.changed if explicit else changed, explicit)


def _quiet(event_name: str, changed: set[str], earlier: Mapping[str, Any]) -> bool:
    if event_name in _ALWAYS_WRITTEN:
        return False
    return all(key in QUIET_KEYS and earlier.get(key) is not None and earlier[key].is_present for key in changed)
