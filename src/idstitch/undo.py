"""Undo one entry of the link log, or redo one (undo an undo): the persons become exactly what
the history would have made without it (identity-rules.md §3, undo).

The entry is not erased: an `undo` entry is appended naming it, and the ids joined to it are
replayed (history.py, replay.py) with every undone entry left out. Later entries stay, each
re-decided by the same rules, so an identify refused because of the undone merge may now attach.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from idstitch.commands import Actor
from idstitch.engine import LinkEntry, PersonStore
from idstitch.errors import Conflict, InvalidRequest, NotFound
from idstitch.history import DECIDED_KINDS, IdentityHistory, IdentityLog, LoggedLink, steps, undone_links
from idstitch.identity import LinkKind
from idstitch.outcomes import LinkOutcome
from idstitch.replay import Decided, MemoryPersons, replay
from idstitch.settings import ProjectSettings


class UndoStore(PersonStore, IdentityLog, Protocol):
    def rewrite_identity(
        self, history: IdentityHistory, replayed: MemoryPersons, outcomes: Mapping[int, Decided], decided_by: int
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Undone:
    undo_id: int
    link_id: int
    # Whether the entry undone was itself an undo, making this a redo.
    redo: bool
    distinct_ids: frozenset[str]
    # The entries the rewritten history decided differently: outcome before and after, by id.
    changed_outcomes: Mapping[int, tuple[str, str]]


def undo_link(store: UndoStore, project_id: int, settings: ProjectSettings, link_id: int, actor: Actor) -> Undone:
    link = store.logged_link(link_id)
    if link is None:
        raise NotFound(f"No link-log entry {link_id}")
    if link.kind == LinkKind.IMPORT:
        raise InvalidRequest(f"Entry {link_id} is an import: split the person or delete it instead")
    history = store.identity_history(d for d in (link.target, link.source) if d is not None)
    undone = undone_links(history.links)
    if link_id in undone:
        raise Conflict(f"Entry {link_id} is already undone by entry {undone[link_id]}: undo that one to redo it")
    seq = store.next_seq()
    detail = {"undoes": link_id}
    undo_id = store.insert_link(
        LinkEntry(
            LinkKind.UNDO.value, str(actor), link.target, link.source, None, None, None, None,
            LinkOutcome.UNDONE, None, seq, detail,
        )
    )
    # The undo entry joins the history read above: it is the newest entry, with the newest seq
    # (its time is the undone entry's here; a replay never reads an undo entry's time).
    logged = LoggedLink(
        undo_id, seq, LinkKind.UNDO.value, str(actor), link.target, link.source, None, None, None,
        LinkOutcome.UNDONE.value, None, LinkOutcome.UNDONE.value, None, detail, link.created_at,
    )
    history = replace(history, links=[*history.links, logged])
    undone = undone_links(history.links)
    replayed, not_replayed = replay(project_id, settings, steps(history, undone))
    outcomes: dict[int, Decided] = {}
    skipped = {link_id: error.reason for error in not_replayed for link_id in error.link_ids}
    for logged in history.links:
        if logged.kind not in DECIDED_KINDS:
            continue
        if logged.id in undone:
            outcomes[logged.id] = Decided(LinkOutcome.UNDONE.value, None)
        elif logged.id in skipped:
            outcomes[logged.id] = Decided(LinkOutcome.REFUSED.value, "not_in_rewritten_history")
        else:
            outcomes[logged.id] = replayed.decided.get(logged.id, Decided(LinkOutcome.REFUSED.value, "not_linked"))
    store.rewrite_identity(history, replayed, outcomes, undo_id)
    store.audit(str(actor), "undo", {"link_id": link_id, "undo_id": undo_id}, ids={"distinct_ids": sorted(history.distinct_ids)})
    now = {logged.id: _words(logged.outcome, logged.reason) for logged in history.links}
    changed = {i: (now[i], _words(d.outcome, d.reason)) for i, d in outcomes.items() if _words(d.outcome, d.reason) != now[i]}
    return Undone(undo_id, link_id, link.kind == LinkKind.UNDO, history.distinct_ids, changed)


def _words(outcome: str, reason: str | None) -> str:
    """An outcome as the API shows it: `refused:<reason>`."""
    return outcome if reason is None else f"{outcome}:{reason}"
