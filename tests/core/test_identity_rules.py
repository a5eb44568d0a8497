"""Identity rules per kind of id (identity-rules.md §3 "Identity rules"): kinds, blocked values,
limits with a window, and the priority that says which id a link over a limit drops."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from idstitch.engine import Batch
from idstitch.id_rules import HeldId, IdentityRules, parse_identity_rules
from idstitch.identity import Action, Decision, Holder, LinkKind, decide_identify_alone, decide_link
from idstitch.outcomes import LinkOutcome, WarningRecord, WarningType
from idstitch.store.transactions import claims_for
from tests.core.harness import PROJECT_ID, T0, Engine, Link, admin_merge, alias, identify, track

pytestmark = pytest.mark.both_stores

DAY = 24 * 60  # the harness counts event times in minutes after T0
CRM = {"name": "crm_id", "pattern": "^crm_"}


def rules(**parts: Any) -> IdentityRules:
    return parse_identity_rules(parts)


def held(distinct_id: str, *, user_id: bool = False, day: float = 0) -> HeldId:
    return HeldId(distinct_id, user_id, T0 + timedelta(days=day))


def holder(distinct_id: str, *ids: HeldId, person_id: str = "p-1") -> Holder:
    """The holder of `distinct_id`, whose person holds `ids` (it among them)."""
    user_ids = [h.distinct_id for h in ids if h.is_user_id]
    return Holder(person_id, bool(user_ids), len(user_ids), distinct_id in user_ids, ids)


def rule_warnings(engine: Engine, kind: WarningType) -> list[dict[str, Any]]:
    rows = engine.conn.execute("SELECT details FROM warnings WHERE type = ? ORDER BY id", (kind.value,))
    return [json.loads(details) for (details,) in rows]


# -- kinds -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "distinct_id, is_user_id, kind",
    [
        pytest.param("crm_42", True, "crm_id", id="a custom kind comes first, even for a user id"),
        pytest.param("crm_ann@example.com", False, "crm_id", id="a custom kind comes before email"),
        pytest.param("ann@example.com", True, "email", id="email comes before user_id"),
        pytest.param("user-42", True, "user_id", id="a user id"),
        pytest.param("8f2c-device", False, "anonymous_id", id="any other id"),
    ],
)
def test_the_kind_of_an_id(distinct_id: str, is_user_id: bool, kind: str) -> None:
    assert rules(kinds=[CRM]).kind_of(distinct_id, is_user_id=is_user_id) == kind


def test_kinds_the_priority_leaves_out_follow_it_in_the_default_order() -> None:
    listed = rules(kinds=[CRM], priority=["anonymous_id"])
    assert sorted(["user_id", "crm_id", "email", "anonymous_id"], key=listed.rank) == [
        "anonymous_id", "user_id", "crm_id", "email",
    ]


# -- decisions -------------------------------------------------------------------------------


def test_a_blocked_value_is_refused_like_an_illegal_id_only_for_its_kind() -> None:
    kiosk = rules(blocked={"anonymous_id": {"values": ["kiosk-1"]}})
    decision = decide_link(LinkKind.IDENTIFY, "user-1", "kiosk-1", None, None, rules=kiosk)
    warning = WarningRecord(
        WarningType.ILLEGAL_DISTINCT_ID,
        ("kiosk-1", "user-1"),
        {"illegal_distinct_id": "kiosk-1", "other_distinct_id": "user-1", "kind": "anonymous_id", "rule": "blocked:anonymous_id"},
    )
    assert decision == Decision("0", Action.NOTHING, None, warnings=(warning,))
    # Named as a user id, the same value is of kind user_id, which blocks nothing.
    assert decide_link(LinkKind.IDENTIFY, "kiosk-1", "dev-1", None, None, rules=kiosk).action is Action.CREATE_BOTH


def test_one_user_id_ever_starts_a_new_person_for_a_second_user_id() -> None:
    one_user_id = rules(limits=[{"kind": "user_id", "max": 1}])
    device = holder("dev-1", held("user-1", user_id=True), held("dev-1"))
    decision = decide_link(
        LinkKind.IDENTIFY, "user-2", "dev-1", None, device, max_user_ids=None, rules=one_user_id, at=T0, event_uuid="e-1"
    )
    warning = WarningRecord(
        WarningType.IDENTITY_RULE_LIMIT,
        ("dev-1", "user-2"),
        {
            "rule": "limit:user_id", "kind": "user_id", "max": 1, "window_days": None,
            "dropped_distinct_id": "dev-1", "dropped_kind": "anonymous_id", "other_distinct_id": "user-2",
        },
        "e-1",
    )
    assert decision == Decision("C", Action.CREATE_TARGET_ALONE, LinkOutcome.REFUSED, True, True, (warning,))


def test_an_id_of_the_person_does_not_become_a_second_user_id_over_a_limit() -> None:
    person = (held("user-1", user_id=True), held("user-2"))
    decision = decide_identify_alone(
        "user-2", holder("user-2", *person), max_user_ids=None, rules=rules(limits=[{"kind": "user_id", "max": 1}]), at=T0
    )
    assert (decision.action, decision.outcome, decision.target_becomes_user_id) == (Action.REFUSE, LinkOutcome.REFUSED, False)
    assert decision.reason == "identity_rule_limit"
    assert decision.warnings[0].details["dropped_kind"] == "user_id"


def test_a_person_over_a_limit_still_takes_ids_of_other_kinds() -> None:
    # An admin merge left it with three devices; a limit of two does not stop it from being identified.
    over = holder("dev-1", held("dev-1"), held("dev-2"), held("dev-3"))
    decision = decide_link(
        LinkKind.IDENTIFY, "user-1", "dev-1", None, over, rules=rules(limits=[{"kind": "anonymous_id", "max": 2}]), at=T0
    )
    assert decision.action is Action.ATTACH_TARGET


def test_an_admin_merge_is_forced_past_every_limit() -> None:
    limits = rules(limits=[{"kind": "anonymous_id", "max": 1}])
    target = holder("user-1", held("user-1", user_id=True), held("dev-1"))
    source = holder("dev-2", held("dev-2"), person_id="p-2")
    assert decide_link(LinkKind.MERGE, "user-1", "dev-2", target, source, rules=limits, at=T0).action is Action.MERGE


# -- the engine: what a project sees -----------------------------------------------------------

CRM_RULES = {"kinds": [CRM], "blocked": {"crm_id": {"values": ["crm_test"], "patterns": ["^crm_demo"]}}}


@pytest.mark.parametrize("crm_id", ["crm_test", "crm_demo_7"])
def test_a_blocked_crm_id_is_never_linked_and_warns_naming_the_rule(make_engine: Callable[..., Engine], crm_id: str) -> None:
    engine = make_engine(identity_rules=CRM_RULES)
    engine.apply(track("dev-1"), identify(crm_id, "dev-1", minute=1))
    engine.apply(track("dev-2"), identify("crm_42", "dev-2", minute=2))

    assert engine.persons() == [
        {"distinct_ids": ["crm_42", "dev-2"], "user_ids": ["crm_42"], "is_identified": True},
        {"distinct_ids": [crm_id], "user_ids": [], "is_identified": False},
        {"distinct_ids": ["dev-1"], "user_ids": [], "is_identified": False},
    ]
    assert engine.links() == [Link("identify", "ingest", "crm_42", "dev-2", "C", "attached", None)]
    assert rule_warnings(engine, WarningType.ILLEGAL_DISTINCT_ID) == [
        {"illegal_distinct_id": crm_id, "other_distinct_id": "dev-1", "kind": "crm_id", "rule": "blocked:crm_id"},
    ]
    assert engine.event_ids() == ["dev-1", crm_id, "dev-2", "crm_42"]  # its events are still ingested


TWO_DEVICES_A_WEEK = {"limits": [{"kind": "anonymous_id", "max": 2, "window_days": 7}]}


def test_a_third_device_within_the_week_keeps_its_own_person_one_later_joins(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine(identity_rules=TWO_DEVICES_A_WEEK)
    for device, day in (("dev-1", 0), ("dev-2", 1), ("dev-3", 2)):
        engine.apply(track(device, minute=day * DAY), identify("user-1", device, minute=day * DAY + 1))

    assert engine.persons() == [
        {"distinct_ids": ["dev-1", "dev-2", "user-1"], "user_ids": ["user-1"], "is_identified": True},
        {"distinct_ids": ["dev-3"], "user_ids": [], "is_identified": False},
    ]
    assert engine.links()[-1] == Link("identify", "ingest", "user-1", "dev-3", "E", "refused", "identity_rule_limit")
    assert rule_warnings(engine, WarningType.IDENTITY_RULE_LIMIT) == [
        {
            "rule": "limit:anonymous_id", "kind": "anonymous_id", "max": 2, "window_days": 7,
            "dropped_distinct_id": "dev-3", "dropped_kind": "anonymous_id", "other_distinct_id": "user-1",
        },
    ]

    # Eight days on, the devices of days 0 and 1 joined more than a week before: a new one joins.
    engine.apply(track("dev-4", minute=10 * DAY), identify("user-1", "dev-4", minute=10 * DAY + 1))
    assert engine.person("dev-4")["distinct_ids"] == ["dev-1", "dev-2", "dev-4", "user-1"]
    assert engine.links()[-1] == Link("identify", "ingest", "user-1", "dev-4", "E", "merged", None)


def test_an_admin_merge_is_not_held_by_a_limit(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine(identity_rules={"limits": [{"kind": "anonymous_id", "max": 1}]})
    engine.apply(track("dev-1"), identify("user-1", "dev-1", minute=1), track("dev-2", minute=2))
    engine.apply(admin_merge("user-1", "dev-2"))
    assert engine.person("dev-2")["distinct_ids"] == ["dev-1", "dev-2", "user-1"]


@pytest.mark.parametrize(
    "priority, dropped, kept",
    [
        pytest.param(["crm_id", "anonymous_id"], "dev-1", "crm_2", id="crm-ids-first"),
        pytest.param(["anonymous_id", "crm_id"], "crm_2", "dev-1", id="devices-first"),
        pytest.param([], "dev-1", "crm_2", id="default-custom-kinds-before-anonymous-ids"),
    ],
)
def test_the_priority_decides_which_id_a_link_over_a_limit_drops(
    make_engine: Callable[..., Engine], priority: list[str], dropped: str, kept: str
) -> None:
    engine = make_engine(identity_rules={"kinds": [CRM], "limits": [{"kind": "crm_id", "max": 1}], "priority": priority})
    engine.apply(track("dev-1"), alias("crm_1", "dev-1", minute=1))
    engine.apply(alias("crm_2", "dev-1", minute=2))

    # One CRM record per person: the second one never joins the device's person.
    assert engine.persons() == [
        {"distinct_ids": ["crm_1", "dev-1"], "user_ids": [], "is_identified": True},
        {"distinct_ids": ["crm_2"], "user_ids": [], "is_identified": True},
    ]
    assert engine.links()[-1] == Link("alias", "ingest", "crm_2", "dev-1", "C", "refused", "identity_rule_limit")
    [warning] = rule_warnings(engine, WarningType.IDENTITY_RULE_LIMIT)
    assert (warning["dropped_distinct_id"], warning["other_distinct_id"], warning["rule"]) == (dropped, kept, "limit:crm_id")


# A day of a site: two devices of one user, a second user on the first device, an alias, a generic id.
DAY_OF_A_SITE = (
    (track("dev-1"), identify("user-1", "dev-1", minute=1)),
    (track("dev-2", minute=2), identify("user-1", "dev-2", minute=3), identify("user-2", "dev-1", minute=4)),
    (alias("user-2", "crm_7", minute=5), identify("user-3", "null", minute=6), identify("user-4", minute=7)),
)
NEVER_FIRING = {
    "kinds": [CRM],
    "blocked": {"crm_id": {"values": ["crm_test"]}, "email": {"patterns": ["@example\\.com$"]}},
    "limits": [{"kind": kind, "max": 100, "window_days": 7} for kind in ("user_id", "crm_id", "email", "anonymous_id")],
    "priority": ["crm_id", "user_id"],
}


@pytest.mark.parametrize(
    "identity_rules",
    [pytest.param(None, id="setting-untouched"), pytest.param({}, id="no-rules"), pytest.param(NEVER_FIRING, id="rules-that-never-fire")],
)
def test_rules_that_do_not_fire_change_nothing(make_engine: Callable[..., Engine], identity_rules: dict | None) -> None:
    engine = make_engine() if identity_rules is None else make_engine(identity_rules=identity_rules)
    for commands in DAY_OF_A_SITE:
        engine.apply(*commands)
    assert engine.persons() == [
        {"distinct_ids": ["crm_7", "user-2"], "user_ids": ["user-2"], "is_identified": True},
        {"distinct_ids": ["dev-1", "dev-2", "user-1"], "user_ids": ["user-1"], "is_identified": True},
        {"distinct_ids": ["user-3"], "user_ids": [], "is_identified": False},
        {"distinct_ids": ["user-4"], "user_ids": ["user-4"], "is_identified": True},
    ]
    assert [(link.target, link.source, link.row, link.outcome, link.reason) for link in engine.links()] == [
        ("user-1", "dev-1", "C", "attached", None),
        ("user-1", "dev-2", "E", "merged", None),
        ("user-2", "dev-1", "C", "refused", "cannot_merge_already_identified"),
        ("user-2", "crm_7", "B", "attached", None),
        ("user-4", None, "A", "created", None),
    ]
    assert [w.type for w in engine.warnings()] == ["cannot_merge_already_identified", "illegal_distinct_id"]


class CountingStore:
    """The real store of a transaction, counting the calls the engine makes to it."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.store, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return method(*args, **kwargs)

        return counted


@pytest.mark.parametrize(
    "identity_rules, person_loads",
    [
        pytest.param({}, 0, id="no-rules"),
        pytest.param(CRM_RULES, 0, id="blocked-values-only"),
        # One load, for the device's person; the new user id has none, and no plain event asks.
        pytest.param(TWO_DEVICES_A_WEEK, 1, id="limits"),
    ],
)
def test_only_limits_load_a_persons_ids_and_only_for_a_link(
    make_engine: Callable[..., Engine], identity_rules: dict, person_loads: int
) -> None:
    engine = make_engine(identity_rules=identity_rules)
    commands = (*(track("dev-1", minute=m) for m in range(20)), identify("user-1", "dev-1", minute=30), track("user-1", minute=31))
    session = engine.session
    session.begin([claims_for(PROJECT_ID, commands)])
    store = CountingStore(session.persons(PROJECT_ID))
    batch = Batch(store, PROJECT_ID, engine.settings, engine.now)  # type: ignore[arg-type]
    batch.prefetch(list(commands))
    for command in commands:
        batch.apply(command)
    batch.flush()
    session.commit()
    assert store.calls["held_ids"] == person_loads
    assert engine.person("dev-1")["distinct_ids"] == ["dev-1", "user-1"]
