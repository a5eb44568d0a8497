"""The identity decision table (identity-rules.md §3): who owns what after identify, alias or merge.

The rules decide, the engine performs: `decide_link` looks only at the two ids' current holders
and returns a `Decision`; it never reads or writes anything.

    row  target person   source person        outcome
    0    -               -                    same id or an illegal id: nothing (warning if illegal)
    A    no              no                   one new identified person owning both
    B    yes             no                   source attached to the target's person
    C    no              yes                  target attached to the source's person
    D    same person     same person          nothing to move; the person becomes identified
    E    yes             yes, not identified  source person merged into the target person
    F    yes             yes, identified      refused: cannot_merge_already_identified

A project's identity rules (id_rules.py) act around the table: an id a rule blocks is refused
like an illegal id (row 0), and a link whose person would break a limit does not join the two
ids (`_within_limits`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any

from idstitch.id_rules import NO_RULES, HeldId, IdentityRules, Limit
from idstitch.ids import IllegalIds, is_illegal_for_identity
from idstitch.outcomes import LinkOutcome, WarningRecord, WarningType


class LinkKind(StrEnum):
    """What asked for a link-log entry: `identify` names a user id, `alias` only joins, `merge`
    forces; `split`, `import` and `undo` (of any entry, an undo's own being a redo) are admin
    actions recorded in the same log."""

    IDENTIFY = "identify"
    ALIAS = "alias"
    MERGE = "merge"
    SPLIT = "split"
    IMPORT = "import"
    UNDO = "undo"


@dataclass(frozen=True, slots=True)
class Holder:
    """What the rules need to know about the person currently owning an id."""

    person_id: str
    is_identified: bool
    user_id_count: int
    # Whether the id itself is already one of this person's user ids.
    id_is_user_id: bool = False
    # The person's ids with their join times. Only limits count them, so the engine loads them
    # only for a project that has limits.
    ids: tuple[HeldId, ...] = ()


class Action(Enum):
    NOTHING = "nothing"
    CREATE_BOTH = "create_both"  # row A
    ATTACH_SOURCE = "attach_source"  # row B: source joins the target's person
    ATTACH_TARGET = "attach_target"  # row C: target joins the source's person
    MARK = "mark"  # row D
    MERGE = "merge"  # row E (and any admin merge)
    CREATE_TARGET_ALONE = "create_target_alone"  # a new user id over the limit starts its own person
    REFUSE = "refuse"  # row F


@dataclass(frozen=True, slots=True)
class Decision:
    row: str
    action: Action
    outcome: LinkOutcome | None  # None: nothing is written to the link log (row 0)
    # Whether the target becomes a user id of its (resulting) person.
    target_becomes_user_id: bool = False
    # Whether the person owning the target ends identified.
    mark_identified: bool = False
    warnings: tuple[WarningRecord, ...] = ()

    @property
    def reason(self) -> str | None:
        return self.warnings[0].type.value if self.outcome is LinkOutcome.REFUSED and self.warnings else None


def decide_link(
    kind: LinkKind,
    target_id: str,
    source_id: str,
    target: Holder | None,
    source: Holder | None,
    *,
    max_user_ids: int | None = 1,
    illegal: IllegalIds | None = None,
    rules: IdentityRules = NO_RULES,
    at: datetime | None = None,
    event_uuid: str | None = None,
) -> Decision:
    """Decide what an identify, alias or merge of `source_id` into `target_id` does (rows 0, A-F),
    under the project's identity rules; `at` is the event's time, which limit windows end at."""
    names_user_id = kind is LinkKind.IDENTIFY
    # The illegal test comes first: using an illegal id warns even when both ids are the same (§2).
    target_is_user_id = names_user_id or (target is not None and target.id_is_user_id)
    source_is_user_id = source is not None and source.id_is_user_id
    for bad, other, is_user_id in (
        (target_id, source_id, target_is_user_id),
        (source_id, target_id, source_is_user_id),
    ):
        warning = _refused_id(bad, other, is_user_id, illegal or IllegalIds(), rules, event_uuid)
        if warning is not None:
            return Decision("0", Action.NOTHING, None, warnings=(warning,))
    if target_id == source_id:
        return Decision("0", Action.NOTHING, None)
    decision = _decide_table(kind, target_id, source_id, target, source, max_user_ids, event_uuid)
    if kind is LinkKind.MERGE or not rules.limits:
        return decision  # a merge is forced: an admin asked for exactly this person
    return _within_limits(
        decision, target_id, source_id, target, source,
        names_user_id=names_user_id, max_user_ids=max_user_ids, rules=rules, at=_time(at), event_uuid=event_uuid,
    )


def _decide_table(
    kind: LinkKind,
    target_id: str,
    source_id: str,
    target: Holder | None,
    source: Holder | None,
    max_user_ids: int | None,
    event_uuid: str | None,
) -> Decision:
    """Rows A-F for two different legal ids."""
    names_user_id = kind is LinkKind.IDENTIFY
    forced = kind is LinkKind.MERGE

    def new_user_ids(holder: Holder, extra: int) -> int:
        adds_target = names_user_id and not (target is not None and target.id_is_user_id)
        return holder.user_id_count + extra + (1 if adds_target else 0)

    def over_limit(count: int) -> bool:
        return not forced and max_user_ids is not None and count > max_user_ids

    def refused(row: str, action: Action = Action.REFUSE, target_becomes_user_id: bool = False) -> Decision:
        warning = WarningRecord(
            WarningType.CANNOT_MERGE_ALREADY_IDENTIFIED,
            (source_id, target_id),
            {"source_distinct_id": source_id, "target_distinct_id": target_id},
            event_uuid,
        )
        return Decision(
            row,
            action,
            LinkOutcome.REFUSED,
            target_becomes_user_id=target_becomes_user_id or (names_user_id and action is Action.CREATE_TARGET_ALONE),
            mark_identified=True,
            warnings=(warning,),
        )

    if target is None and source is None:
        return Decision("A", Action.CREATE_BOTH, LinkOutcome.CREATED, names_user_id, True)
    if target is not None and source is None:
        if over_limit(new_user_ids(target, 0)):
            return refused("B")
        return Decision("B", Action.ATTACH_SOURCE, LinkOutcome.ATTACHED, names_user_id, True)
    if target is None and source is not None:
        if over_limit(new_user_ids(source, 0)):
            # Heap: a changed identity is a new user. The new user id gets a person of its own.
            return refused("C", Action.CREATE_TARGET_ALONE)
        return Decision("C", Action.ATTACH_TARGET, LinkOutcome.ATTACHED, names_user_id, True)
    assert target is not None and source is not None
    if target.person_id == source.person_id:
        if over_limit(new_user_ids(target, 0)):
            return refused("D")
        return Decision("D", Action.MARK, LinkOutcome.ALREADY_LINKED, names_user_id, True)
    if source.is_identified and not forced:
        return refused("F", target_becomes_user_id=names_user_id and not over_limit(new_user_ids(target, 0)))
    if over_limit(new_user_ids(target, source.user_id_count)):
        return refused("E")
    return Decision("E", Action.MERGE, LinkOutcome.MERGED, names_user_id, True)


def decide_identify_alone(
    user_id: str,
    holder: Holder | None,
    *,
    max_user_ids: int | None = 1,
    illegal: IllegalIds | None = None,
    rules: IdentityRules = NO_RULES,
    at: datetime | None = None,
    event_uuid: str | None = None,
) -> Decision:
    """`identify(user_id)` with no anonymous id: the id's person becomes identified, owning it as a user id."""
    warning = _refused_id(user_id, None, True, illegal or IllegalIds(), rules, event_uuid)
    if warning is not None:
        return Decision("0", Action.NOTHING, None, warnings=(warning,))
    decision = _identify_alone(user_id, holder, max_user_ids, event_uuid)
    if not rules.limits:
        return decision
    return _within_limits(
        decision, user_id, None, holder, None,
        names_user_id=True, max_user_ids=max_user_ids, rules=rules, at=_time(at), event_uuid=event_uuid,
    )


def _identify_alone(user_id: str, holder: Holder | None, max_user_ids: int | None, event_uuid: str | None) -> Decision:
    if holder is None:
        return Decision("A", Action.CREATE_TARGET_ALONE, LinkOutcome.CREATED, True, True)
    if holder.id_is_user_id:
        return Decision("D", Action.MARK, LinkOutcome.ALREADY_LINKED, True, True)
    if max_user_ids is not None and holder.user_id_count + 1 > max_user_ids:
        warning = WarningRecord(
            WarningType.CANNOT_MERGE_ALREADY_IDENTIFIED,
            (user_id,),
            {"target_distinct_id": user_id, "user_id_count": holder.user_id_count},
            event_uuid,
        )
        return Decision("D", Action.REFUSE, LinkOutcome.REFUSED, False, True, (warning,))
    return Decision("D", Action.MARK, LinkOutcome.ALREADY_LINKED, True, True)


def _refused_id(
    distinct_id: str,
    other: str | None,
    is_user_id: bool,
    illegal: IllegalIds,
    rules: IdentityRules,
    event_uuid: str | None,
) -> WarningRecord | None:
    """The warning for an id that must never be linked: illegal (§2), or blocked by a rule of its kind."""
    kind = None
    if not is_illegal_for_identity(distinct_id, illegal):
        kind = rules.blocking_kind(distinct_id, is_user_id=is_user_id)
        if kind is None:
            return None  # every identify asks, twice: build the warning only for an id refused
    ids = (distinct_id,) if other is None else (distinct_id, other)
    details = {"illegal_distinct_id": distinct_id} | ({} if other is None else {"other_distinct_id": other})
    if kind is not None:
        details |= {"kind": kind, "rule": f"blocked:{kind}"}
    return WarningRecord(WarningType.ILLEGAL_DISTINCT_ID, ids, details, event_uuid)


# Actions that put the two ids of a link on one person.
_JOINS = frozenset({Action.CREATE_BOTH, Action.ATTACH_SOURCE, Action.ATTACH_TARGET, Action.MERGE})


def _within_limits(
    decision: Decision,
    target_id: str,
    source_id: str | None,
    target: Holder | None,
    source: Holder | None,
    *,
    names_user_id: bool,
    max_user_ids: int | None,
    rules: IdentityRules,
    at: datetime,
    event_uuid: str | None,
) -> Decision:
    """The decision, unless the person it leaves the target on would break a limit (§3 "Identity
    rules"). Then a join joins nothing: the id of the lower-priority kind is dropped from the link
    and each id stays on (or starts) a person of its own, the target treated as in any refused
    link. A target that may not become a user id stays what it was."""
    for holder in (target, source):
        assert holder is None or holder.ids, "limits count a person's ids: the holder needs Holder.ids"
    after, before = _person_after(decision, target_id, source_id, target, source, at)
    limit = rules.broken_limit(after, before, at)
    if limit is None:
        return decision
    if decision.action in _JOINS:
        assert source_id is not None
        target_kind = rules.kind_of(target_id, is_user_id=names_user_id or (target is not None and target.id_is_user_id))
        source_kind = rules.kind_of(source_id, is_user_id=source is not None and source.id_is_user_id)
        # Segment Unify drops the lowest-priority identifier; on a tie the source, since the target survives (§3).
        if rules.rank(target_kind) > rules.rank(source_kind):
            warning = _limit_warning(limit, target_id, target_kind, source_id, event_uuid)
        else:
            warning = _limit_warning(limit, source_id, source_kind, target_id, event_uuid)
        fits = max_user_ids is None or target is None or target.id_is_user_id or target.user_id_count < max_user_ids
        alone = Decision(
            decision.row,
            Action.CREATE_TARGET_ALONE if target is None else Action.REFUSE,
            LinkOutcome.REFUSED,
            target_becomes_user_id=names_user_id and fits,
            mark_identified=True,
            warnings=(warning,),
        )
        # Alone, the target becoming a user id may still break a limit on user ids.
        return _within_limits(
            alone, target_id, source_id, target, source,
            names_user_id=names_user_id, max_user_ids=max_user_ids, rules=rules, at=at, event_uuid=event_uuid,
        )
    # Nothing joins, so what breaks the limit is the target becoming a user id of its person.
    assert decision.target_becomes_user_id and target is not None
    warning = _limit_warning(limit, target_id, rules.kind_of(target_id, is_user_id=True), source_id, event_uuid)
    return replace(
        decision,
        action=Action.REFUSE,
        outcome=LinkOutcome.REFUSED,
        target_becomes_user_id=False,
        warnings=(*decision.warnings, warning),
    )


def _person_after(
    decision: Decision,
    target_id: str,
    source_id: str | None,
    target: Holder | None,
    source: Holder | None,
    at: datetime,
) -> tuple[list[HeldId], list[tuple[HeldId, ...]]]:
    """The ids of the person the decision leaves the target on, and those of the persons that become it.
    An id new to idstitch joins at the event's time."""
    becomes = decision.target_becomes_user_id
    new_target = HeldId(target_id, becomes, at)
    new_source = HeldId(source_id, False, at) if source_id is not None else None
    own: list[HeldId] = []  # the target's person, the target a user id there if it becomes one
    if target is not None:
        own = [replace(h, is_user_id=True) if becomes and h.distinct_id == target_id else h for h in target.ids]
    action = decision.action
    if action is Action.CREATE_BOTH:
        assert new_source is not None
        return [new_target, new_source], []
    if action is Action.CREATE_TARGET_ALONE:
        return [new_target], []
    if action is Action.ATTACH_TARGET:
        assert source is not None
        return [*source.ids, new_target], [source.ids]
    if target is None:
        return [], []
    if action is Action.ATTACH_SOURCE:
        assert new_source is not None
        return [*own, new_source], [target.ids]
    if action is Action.MERGE:
        assert source is not None
        return [*own, *source.ids], [target.ids, source.ids]
    return own, [target.ids]  # MARK, REFUSE: the target's person, the target perhaps a user id now


def _limit_warning(
    limit: Limit, dropped: str, dropped_kind: str, other: str | None, event_uuid: str | None
) -> WarningRecord:
    details: dict[str, Any] = {
        "rule": f"limit:{limit.kind}",
        "kind": limit.kind,
        "max": limit.max,
        "window_days": limit.window_days,
        "dropped_distinct_id": dropped,
        "dropped_kind": dropped_kind,
    }
    if other is not None:
        details["other_distinct_id"] = other
    ids = (dropped,) if other is None else (dropped, other)
    return WarningRecord(WarningType.IDENTITY_RULE_LIMIT, ids, details, event_uuid)


def _time(at: datetime | None) -> datetime:
    assert at is not None, "limits count ids joined before a time: pass the event's time as `at`"
    return at
