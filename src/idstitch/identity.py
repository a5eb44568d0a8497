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
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum

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
    event_uuid: str | None = None,
) -> Decision:
    """Decide what an identify, alias or merge of `source_id` into `target_id` does (rows 0, A-F)."""
    illegal = illegal or IllegalIds()
    # The illegal test comes first: using an illegal id warns even when both ids are the same (§2).
    for bad, other in ((target_id, source_id), (source_id, target_id)):
        if is_illegal_for_identity(bad, illegal):
            warning = WarningRecord(
                WarningType.ILLEGAL_DISTINCT_ID,
                (bad, other),
                {"illegal_distinct_id": bad, "other_distinct_id": other},
                event_uuid,
            )
            return Decision("0", Action.NOTHING, None, warnings=(warning,))
    if target_id == source_id:
        return Decision("0", Action.NOTHING, None)

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
    event_uuid: str | None = None,
) -> Decision:
    """`identify(user_id)` with no anonymous id: the id's person becomes identified, owning it as a user id."""
    if is_illegal_for_identity(user_id, illegal or IllegalIds()):
        warning = WarningRecord(
            WarningType.ILLEGAL_DISTINCT_ID, (user_id,), {"illegal_distinct_id": user_id}, event_uuid
        )
        return Decision("0", Action.NOTHING, None, warnings=(warning,))
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
