"""Properties of the identity rules' decisions (identity-rules.md §3 "Identity rules"), over random
persons, links and rules, with no store: the decision is pure.

* rules that never fire (none, or blocked values nobody uses and limits nobody reaches) decide
  exactly what the table alone decides;
* a link that is not an admin merge never leaves a person over a limit it was not already over;
* when a limit stops a join, the id dropped is the one of the lower-priority kind (on a tie, the source);
* an admin merge ignores limits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import hypothesis
from hypothesis import event, given
from hypothesis import strategies as st

from idstitch.id_rules import HeldId, IdentityRules, Limit, parse_identity_rules
from idstitch.identity import Action, Decision, Holder, LinkKind, decide_identify_alone, decide_link
from idstitch.outcomes import LinkOutcome, WarningType
from tests.core.harness import T0

IDS = ["user-1", "user-2", "dev-1", "dev-2", "dev-3", "crm_1", "crm_2", "ann@example.com", "bob@example.com"]
KINDS = ["user_id", "crm_id", "email", "anonymous_id"]
CRM = {"name": "crm_id", "pattern": "^crm_"}
JOINS = {Action.CREATE_BOTH, Action.ATTACH_SOURCE, Action.ATTACH_TARGET, Action.MERGE}


@dataclass(frozen=True)
class Mapped:
    """Where an id is: its person, whether it is a user id there, when it joined."""

    person: str
    is_user_id: bool
    joined_at: datetime


World = dict[str, Mapped]


@st.composite
def worlds(draw: st.DrawFn) -> tuple[World, dict[str, bool]]:
    """Some of the ids on up to two persons, and whether each person is identified. Most
    persons hold several ids that joined in the days before the link, so that limits are met."""
    world = {
        distinct_id: Mapped(
            draw(st.sampled_from(["p-1", "p-2"])),
            draw(st.sampled_from([False, False, False, True])),  # mostly anonymous ids
            T0 + timedelta(hours=draw(st.integers(0, 6 * 24))),
        )
        for distinct_id in draw(st.lists(st.sampled_from(IDS), unique=True, min_size=4, max_size=8))
    }
    # A person with a user id is identified; one without, rarely (an alias or an import did it).
    identified = {
        p: any(m.is_user_id for m in world.values() if m.person == p) or draw(st.sampled_from([False, False, False, True]))
        for p in ("p-1", "p-2")
    }
    return world, identified


LIMITS = st.lists(
    st.fixed_dictionaries(
        {"kind": st.sampled_from(KINDS), "max": st.integers(1, 2)},
        optional={"window_days": st.sampled_from([1, 3, 7])},
    ),
    min_size=1,
    max_size=3,
)
PRIORITIES = st.permutations(KINDS).flatmap(lambda order: st.integers(0, len(order)).map(lambda n: list(order[:n])))
RULES = st.builds(
    lambda limits, priority: parse_identity_rules({"kinds": [CRM], "limits": limits, "priority": priority}), LIMITS, PRIORITIES
)
NEVER_FIRING = parse_identity_rules({
    "kinds": [CRM],
    "blocked": {
        "crm_id": {"values": ["crm_never"]},
        "email": {"patterns": ["@never\\.example$"]},
        "anonymous_id": {"values": ["dev-0"]},
    },
    "limits": [{"kind": kind, "max": 100} for kind in KINDS] + [{"kind": "anonymous_id", "max": 50, "window_days": 1}],
    "priority": ["email", "crm_id"],
})
# Mostly after the ids joined; sometimes before some of them (a late event).
AT = st.integers(0, 8 * 24).map(lambda hours: T0 + timedelta(hours=hours))
USER_ID_LIMITS = st.sampled_from([1, 2, None])
LINKS = st.sampled_from([LinkKind.IDENTIFY, LinkKind.ALIAS])
# Two different ids: the same id twice links nothing, whatever the rules.
TWO_IDS = st.permutations(IDS).map(lambda ids: ids[:2])


def holder_of(distinct_id: str | None, world: World, identified: dict[str, bool]) -> Holder | None:
    if distinct_id not in world:
        return None
    person = world[distinct_id].person
    ids = tuple(HeldId(d, m.is_user_id, m.joined_at) for d, m in world.items() if m.person == person)
    return Holder(person, identified[person], sum(h.is_user_id for h in ids), world[distinct_id].is_user_id, ids)


def performed(world: World, decision: Decision, target: str, source: str | None, at: datetime) -> World:
    """Where the ids are after the engine performs the decision (engine.py `Batch._perform`)."""
    after = dict(world)
    becomes = decision.target_becomes_user_id
    action = decision.action
    if action is Action.CREATE_BOTH:
        assert source is not None
        after[target], after[source] = Mapped("new", becomes, at), Mapped("new", False, at)
    elif action is Action.ATTACH_SOURCE:
        assert source is not None
        after[source] = Mapped(world[target].person, False, at)
    elif action is Action.ATTACH_TARGET:
        assert source is not None
        after[target] = Mapped(world[source].person, becomes, at)
    elif action is Action.MERGE:
        assert source is not None
        merged = world[source].person
        after = {d: replace(m, person=world[target].person) if m.person == merged else m for d, m in world.items()}
    elif action is Action.CREATE_TARGET_ALONE:
        after[target] = Mapped("new", becomes, at)
    if becomes and target in after:
        after[target] = replace(after[target], is_user_id=True)
    return after


def count(limit: Limit, world: World, person: str, rules: IdentityRules, at: datetime) -> int:
    window = timedelta(days=limit.window_days) if limit.window_days is not None else None
    return sum(
        1
        for d, m in world.items()
        if m.person == person
        and rules.kind_of(d, is_user_id=m.is_user_id) == limit.kind
        and (window is None or at - window < m.joined_at <= at)
    )


def assert_within_limits(before: World, after: World, rules: IdentityRules, at: datetime) -> None:
    for person in {m.person for m in after.values()}:
        became = {before[d].person for d, m in after.items() if m.person == person and d in before}
        for limit in rules.limits:
            held_before = [count(limit, before, p, rules, at) for p in became]
            assert count(limit, after, person, rules, at) <= max([limit.max, *held_before]), f"{person} over {limit}"


@given(world=worlds(), kind=st.sampled_from(list(LinkKind)[:3]), target=st.sampled_from([*IDS, "null"]),
       source=st.sampled_from([*IDS, "null"]), max_user_ids=USER_ID_LIMITS, at=AT)
def test_rules_that_never_fire_decide_what_the_table_decides(
    world: tuple[World, dict[str, bool]], kind: LinkKind, target: str, source: str, max_user_ids: int | None, at: datetime
) -> None:
    ids, identified = world
    args: Any = (kind, target, source, holder_of(target, ids, identified), holder_of(source, ids, identified))
    today = decide_link(*args, max_user_ids=max_user_ids, event_uuid="e-1")
    assert decide_link(*args, max_user_ids=max_user_ids, rules=parse_identity_rules({}), at=at, event_uuid="e-1") == today
    assert decide_link(*args, max_user_ids=max_user_ids, rules=NEVER_FIRING, at=at, event_uuid="e-1") == today
    alone = holder_of(target, ids, identified)
    assert decide_identify_alone(target, alone, max_user_ids=max_user_ids, rules=NEVER_FIRING, at=at) == decide_identify_alone(
        target, alone, max_user_ids=max_user_ids
    )


@given(world=worlds(), kind=LINKS, link=TWO_IDS, rules=RULES, max_user_ids=USER_ID_LIMITS, at=AT)
def test_a_link_never_takes_a_person_over_a_limit_and_drops_the_lower_priority_id(
    world: tuple[World, dict[str, bool]],
    kind: LinkKind,
    link: list[str],
    rules: IdentityRules,
    max_user_ids: int | None,
    at: datetime,
) -> None:
    ids, identified = world
    target, source = link
    target_holder, source_holder = holder_of(target, ids, identified), holder_of(source, ids, identified)
    decision = decide_link(kind, target, source, target_holder, source_holder, max_user_ids=max_user_ids, rules=rules, at=at)
    assert_within_limits(ids, performed(ids, decision, target, source, at), rules, at)

    unlimited = decide_link(
        kind, target, source, target_holder, source_holder, max_user_ids=max_user_ids, rules=replace(rules, limits=()), at=at
    )
    # Steer towards links that, without limits, would take a person furthest over one.
    without_limits = performed(ids, unlimited, target, source, at)
    over = [count(limit, without_limits, m.person, rules, at) - limit.max for limit in rules.limits for m in without_limits.values()]
    hypothesis.target(max(over, default=0), label="ids over a limit a link would bring without limits")
    if decision == unlimited:
        return
    assert decision.outcome is LinkOutcome.REFUSED and decision.action in (Action.REFUSE, Action.CREATE_TARGET_ALONE)
    if unlimited.action not in JOINS:
        event("a limit kept the target from becoming a user id")
        return
    event("a limit stopped a join")
    first = decision.warnings[0]
    assert first.type is WarningType.IDENTITY_RULE_LIMIT
    dropped, other = first.details["dropped_distinct_id"], first.details["other_distinct_id"]
    assert {dropped, other} == {target, source}
    target_kind = rules.kind_of(target, is_user_id=kind is LinkKind.IDENTIFY or bool(target_holder and target_holder.id_is_user_id))
    source_kind = rules.kind_of(source, is_user_id=bool(source_holder and source_holder.id_is_user_id))
    kinds = {target: target_kind, source: source_kind}
    assert first.details["dropped_kind"] == kinds[dropped]
    assert rules.rank(kinds[dropped]) >= rules.rank(kinds[other])
    if kinds[dropped] == kinds[other]:
        assert dropped == source


@given(world=worlds(), target=st.sampled_from(IDS), rules=RULES, max_user_ids=USER_ID_LIMITS, at=AT)
def test_an_identify_alone_never_takes_a_person_over_a_limit(
    world: tuple[World, dict[str, bool]], target: str, rules: IdentityRules, max_user_ids: int | None, at: datetime
) -> None:
    ids, identified = world
    decision = decide_identify_alone(target, holder_of(target, ids, identified), max_user_ids=max_user_ids, rules=rules, at=at)
    assert_within_limits(ids, performed(ids, decision, target, None, at), rules, at)


@given(world=worlds(), link=TWO_IDS, rules=RULES, at=AT)
def test_an_admin_merge_ignores_limits(world: tuple[World, dict[str, bool]], link: list[str], rules: IdentityRules, at: datetime) -> None:
    ids, identified = world
    target, source = link
    args: Any = (LinkKind.MERGE, target, source, holder_of(target, ids, identified), holder_of(source, ids, identified))
    assert decide_link(*args, rules=rules, at=at) == decide_link(*args)
