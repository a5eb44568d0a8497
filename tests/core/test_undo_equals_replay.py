"""The undo property (issue 12, identity-rules.md §3): for random histories, undoing one link
gives exactly what ingesting the same history without that link gives — the same persons and
person ids, the same mapping and user ids, the same attributes, and every other link decided the
same way; and redoing it gives back what was there before. The history without the link keeps the link's event, as an ordinary event; a split in
it separates the same groups of ids as the split that was logged.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given, note
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from idstitch.clock import format_time
from idstitch.commands import Command, Identify, ImportPerson, Merge, Split, Track
from idstitch.errors import Conflict, InvalidRequest, NotFound
from idstitch.settings import DEFAULT_PROJECT_SETTINGS, ProjectSettings
from idstitch.store.retention import expire_batch
from idstitch.store.sqlite import SQLiteWriteSession
from tests.core.harness import (
    ADMIN,
    PROJECT_ID,
    RECEIVED_AT,
    T0,
    Engine,
    admin_merge,
    alias,
    at,
    identify,
    split,
    track,
)

USER_IDS = st.sampled_from(["user-1", "user-2", "user-3"])
ANONYMOUS_IDS = st.sampled_from(["anon-1", "anon-2", "anon-3", "anon-4"])
ANY_ID = st.one_of(USER_IDS, ANONYMOUS_IDS)
MINUTE = st.integers(0, 120)
OPS = st.fixed_dictionaries(
    {},
    optional={
        "set": st.dictionaries(st.sampled_from(["plan", "name", "email"]), st.sampled_from(["a", "b", "ann@example.com"]), max_size=2),
        "set_once": st.dictionaries(st.sampled_from(["plan", "source"]), st.sampled_from(["x", "y"]), max_size=1),
        "add": st.dictionaries(st.just("visits"), st.integers(1, 3), max_size=1),
    },
)


@dataclass(frozen=True)
class SplitOf:
    """Split the person owning `distinct_id` when the command runs: all its ids, or only this one."""

    distinct_id: str
    only_this_id: bool


COMMANDS = st.one_of(
    st.builds(lambda d, m, ops: track(d, minute=m, **ops), ANY_ID, MINUTE, OPS),
    st.builds(lambda u, a, m, ops: identify(u, a, minute=m, **ops), USER_IDS, st.one_of(ANONYMOUS_IDS, st.none()), MINUTE, OPS),
    st.builds(lambda u, a, m, ops: identify(u, a, minute=m, **ops), USER_IDS, ANONYMOUS_IDS, MINUTE, OPS),
    st.builds(lambda t, s, m: alias(t, s, minute=m), ANY_ID, ANY_ID, MINUTE),
    st.builds(admin_merge, ANY_ID, ANY_ID),
    st.builds(SplitOf, ANY_ID, st.booleans()),
    st.builds(
        lambda ids, user, props: ImportPerson(tuple(ids), tuple(ids[:1]) if user else (), props, user, RECEIVED_AT, ADMIN),
        st.lists(st.sampled_from(["crm-1", "crm-2", "anon-4"]), min_size=1, max_size=2, unique=True),
        st.booleans(),
        st.dictionaries(st.sampled_from(["plan", "company"]), st.sampled_from(["a", "acme"]), max_size=2),
    ),
)
HISTORIES = st.lists(st.lists(COMMANDS, min_size=1, max_size=4), min_size=2, max_size=7)
SETTINGS = st.sampled_from([
    {}, {"max_user_ids": 2}, {"person_profiles": "identified_only"}, {"max_user_ids": None},
    {"identity_rules": {"limits": [{"kind": "anonymous_id", "max": 2, "window_days": 1}],
                        "blocked": {"anonymous_id": {"values": ["anon-4"]}}}},
])

_runs = iter(range(1_000_000))


@pytest.fixture(scope="module")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("undo")


@contextmanager
def fresh_engine(databases: Path, template: Path, settings: ProjectSettings) -> Iterator[Engine]:
    path = databases / f"run-{next(_runs)}.db"
    shutil.copyfile(template, path)
    session = SQLiteWriteSession(path, lambda: RECEIVED_AT)
    session.conn.execute("PRAGMA synchronous = OFF")
    engine = Engine(session, settings)
    try:
        yield engine
    finally:
        engine.close()


@dataclass
class Applied:
    """A command as it ran in the original history: the entries it logged."""

    command: Any
    link_ids: list[int]
    # For a split: the groups of ids it logged, which the history without the link separates too.
    groups: tuple[tuple[str, ...], ...] | None = None


def run_original(
    engine: Engine, transactions: list[list[Any]], after_each: Callable[[int], None] | None = None
) -> list[Applied]:
    """The history as ingested; `after_each(n)` runs after the n-th transaction (retention)."""
    applied: list[Applied] = []

    def apply(batch: Any, command: Any) -> None:
        before = _last_link(engine)
        try:
            if isinstance(command, SplitOf):
                person_id = engine.person_id(command.distinct_id)
                if person_id is None:
                    return
                batch.apply(split(person_id, (command.distinct_id,) if command.only_this_id else None))
            else:
                batch.apply(command)
        except (InvalidRequest, NotFound, Conflict):  # nothing to split; no person to merge; an id taken
            return
        new = [row for row in engine.conn.execute(
            "SELECT id, kind, target_distinct_id, target_person_id FROM links WHERE id > ? ORDER BY id", (before,)
        )]
        groups = None
        if isinstance(command, SplitOf):
            by_person: dict[str, list[str]] = {}
            for _, _, target, person_id in new:
                by_person.setdefault(person_id, []).append(target)
            groups = tuple(tuple(g) for g in by_person.values())
        applied.append(Applied(command, [row[0] for row in new], groups))

    for n, commands in enumerate(transactions):
        events = tuple(c for c in commands if not isinstance(c, SplitOf))
        engine.run(lambda batch: [apply(batch, c) for c in commands], events)
        if after_each is not None:
            after_each(n)
    return applied


def run_without(engine: Engine, transactions: list[list[Any]], applied: list[Applied], left_out: Applied) -> None:
    """The same transactions, the left-out command's link gone (its event kept)."""
    as_applied = {id(a.command): a for a in applied}

    def rewritten(command: Any) -> Command | None:
        done = as_applied.get(id(command))
        if done is None:
            return None  # it did nothing in the original either
        if done is left_out:
            event_ = getattr(command, "event", None)
            return Track(event_) if event_ is not None else None
        if isinstance(command, SplitOf):
            return Split(None, None, ADMIN, groups=done.groups)
        return command  # type: ignore[no-any-return]

    def apply(batch: Any, command: Command) -> None:
        try:
            batch.apply(command)
        except (NotFound, Conflict):  # without the link: no person to merge yet; an imported id taken
            pass

    for commands in transactions:
        kept = [c for c in map(rewritten, commands) if c is not None]
        events = tuple(c for c in kept if not isinstance(c, Split))
        engine.run(lambda batch: [apply(batch, c) for c in kept], events if len(events) == len(kept) else ())


def _last_link(engine: Engine) -> int:
    return int(engine.conn.execute("SELECT coalesce(max(id), 0) FROM links").fetchone()[0])


def state(engine: Engine, *, attributes: bool = True) -> dict[str, Any]:
    """Persons with their ids (and when each joined), flags, first-seen time and attributes."""
    conn = engine.conn
    persons = {}
    for person_id, created_at, identified in conn.execute("SELECT id, created_at, is_identified FROM persons WHERE project_id = ?", (PROJECT_ID,)):
        ids = conn.execute(
            "SELECT distinct_id, is_user_id, created_at FROM distinct_ids WHERE person_id = ? ORDER BY distinct_id", (person_id,)
        ).fetchall()
        persons[person_id] = {
            "ids": [tuple(r) for r in ids], "created_at": created_at, "identified": bool(identified),
            "attributes": engine.properties_of(person_id) if attributes else None,
        }
    return persons


def decided_outcomes(engine: Engine, skip: set[int]) -> list[tuple[Any, ...]]:
    """Each identify, alias and merge with its outcome now; an admin merge the history without the
    link could not make (its ids had no person yet) is not in that history at all."""
    rows = engine.conn.execute(
        "SELECT l.id, l.kind, l.target_distinct_id, l.source_distinct_id, coalesce(x.outcome, l.outcome),"
        " CASE WHEN x.link_id IS NULL THEN l.reason ELSE x.reason END"
        " FROM links l LEFT JOIN link_effects x ON x.link_id = l.id"
        " WHERE l.kind IN ('identify', 'alias', 'merge') ORDER BY l.id"
    ).fetchall()
    return [tuple(r[1:]) for r in rows if r[0] not in skip and r[5] != "not_in_rewritten_history"]


def describe(command: Any) -> str:
    if isinstance(command, SplitOf):
        return f"split person of {command.distinct_id!r} ({'only it' if command.only_this_id else 'all'})"
    if isinstance(command, ImportPerson):
        return f"import({command.distinct_ids!r}, user_ids={command.user_ids!r}, {command.properties!r})"
    if isinstance(command, Merge):
        return f"admin_merge({command.target!r}, {command.source!r})"
    e = command.event
    minute = int((e.timestamp - T0).total_seconds() // 60)
    if isinstance(command, Track):
        return f"track({e.distinct_id!r}, minute={minute}, **{e.ops.to_json()})"
    if isinstance(command, Identify):
        return f"identify({command.user_id!r}, {command.anonymous_id!r}, minute={minute}, **{e.ops.to_json()})"
    return f"alias({command.target!r}, {command.source!r}, minute={minute})"


@given(transactions=HISTORIES, changes=SETTINGS, choice=st.integers(0, 10_000))
def test_undoing_a_link_equals_the_history_without_it(
    databases: Path, migrated_database: Path, transactions: list[list[Any]], changes: dict[str, Any], choice: int
) -> None:
    note("\n".join(f"transaction {n}: " + "; ".join(map(describe, t)) for n, t in enumerate(transactions, 1)))
    settings = DEFAULT_PROJECT_SETTINGS.updated(changes)
    with fresh_engine(databases, migrated_database, settings) as original:
        applied = run_original(original, transactions)
        undoable = [a for a in applied if len(a.link_ids) == 1 and not isinstance(a.command, (SplitOf, ImportPerson))]
        if not undoable:
            event("no link to undo")
            return
        left_out = undoable[choice % len(undoable)]
        note(f"undo: {describe(left_out.command)} (entry {left_out.link_ids[0]})")
        event(f"undo of {type(left_out.command).__name__}")
        before, outcomes_before = state(original), decided_outcomes(original, set())
        undo = original.undo(left_out.link_ids[0])
        with fresh_engine(databases, migrated_database, settings) as without:
            run_without(without, transactions, applied, left_out)
            attributes = settings.person_profiles == "always"
            assert state(original, attributes=attributes) == state(without, attributes=attributes)
            assert decided_outcomes(original, set(left_out.link_ids)) == decided_outcomes(without, set())
        # A redo (the undo undone) gives back the history as it was.
        original.undo(undo.undo_id)
        assert state(original) == before
        assert decided_outcomes(original, set()) == outcomes_before


# -- with retention between the steps (store/retention.py) ----------------------------------------

PAGE = st.fixed_dictionaries({"$current_url": st.sampled_from(["https://shop.example/", "https://shop.example/pricing"])})
COMMANDS_WITH_RETENTION = st.one_of(
    COMMANDS,
    # Plain events, most of which retention deletes whole: a run of them per id, some personless.
    st.builds(lambda d, m: track(d, "Ping", minute=m), ANY_ID, MINUTE),
    st.builds(lambda d, m: track(d, "Ping", minute=m, process_person=False), ANY_ID, MINUTE),
    # Page views whose properties set automatic attributes: kept apart with those properties.
    st.builds(lambda d, m, p: track(d, minute=m, properties=p), ANY_ID, MINUTE, PAGE),
)
HISTORIES_WITH_RETENTION = st.lists(st.lists(COMMANDS_WITH_RETENTION, min_size=1, max_size=5), min_size=2, max_size=7)
# After each transaction: nothing, or expire everything before this minute, this many events a batch.
RETENTION = st.lists(st.one_of(st.none(), st.tuples(st.integers(0, 130), st.integers(1, 4))), min_size=7, max_size=7)


def expire(engine: Engine, minute: int, limit: int) -> None:
    """Every event before `minute` expires, batch by batch, as the writer runs them (alone)."""
    resume: str | None = None
    while True:
        done = engine.run(lambda _: expire_batch(engine.conn, PROJECT_ID, format_time(at(minute)), resume=resume, limit=limit))
        if not done.more:
            return
        resume = done.resume


def attribute_rows(engine: Engine) -> list[tuple[Any, ...]]:
    """Every attribute with its time, seq and event: a re-derivation makes these exactly again."""
    return sorted(tuple(r) for r in engine.conn.execute(
        "SELECT p.id, a.key, a.value, a.kind, a.time, a.seq, a.event_uuid FROM person_attributes a"
        " JOIN persons p ON p.id = a.person_id"
    ))


@hypothesis_settings(deadline=None)  # three stores per example
@given(transactions=HISTORIES_WITH_RETENTION, changes=SETTINGS, retention=RETENTION, choice=st.integers(0, 10_000))
def test_undoing_a_link_after_retention_equals_the_history_without_it(
    databases: Path, migrated_database: Path, transactions: list[list[Any]], changes: dict[str, Any],
    retention: list[tuple[int, int] | None], choice: int,
) -> None:
    """Retention deletes events between the steps; splits (among the steps), an undo and its redo
    then make exactly what they make with every event there."""
    note("\n".join(f"transaction {n}: " + "; ".join(map(describe, t)) for n, t in enumerate(transactions, 1)))
    note(f"retention after each transaction (before minute, batch): {retention[:len(transactions)]}")
    settings = DEFAULT_PROJECT_SETTINGS.updated(changes)
    with fresh_engine(databases, migrated_database, settings) as original, \
            fresh_engine(databases, migrated_database, settings) as kept_all:

        def retain(n: int) -> None:
            if retention[n] is not None:
                expire(original, *retention[n])

        applied = run_original(original, transactions, retain)
        run_original(kept_all, transactions)
        def count(engine: Engine, table: str) -> int:
            return int(engine.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

        retired, deleted = count(original, "retired_events"), count(kept_all, "events") - count(original, "events")
        event(f"retention kept {'some' if retired else 'no'} events apart and deleted {'some' if deleted > retired else 'none'} whole")
        # Persons, ids and attributes stay; the splits after retention re-derived the same.
        assert state(original) == state(kept_all)
        assert attribute_rows(original) == attribute_rows(kept_all)
        assert decided_outcomes(original, set()) == decided_outcomes(kept_all, set())
        undoable = [a for a in applied if len(a.link_ids) == 1 and not isinstance(a.command, (SplitOf, ImportPerson))]
        if not undoable:
            return
        left_out = undoable[choice % len(undoable)]
        note(f"undo: {describe(left_out.command)} (entry {left_out.link_ids[0]})")
        before, outcomes_before = state(original), decided_outcomes(original, set())
        undo = original.undo(left_out.link_ids[0])
        kept_all.undo(left_out.link_ids[0])
        # The same as undoing with every event there, and as the history without the link.
        assert state(original) == state(kept_all)
        assert attribute_rows(original) == attribute_rows(kept_all)
        assert decided_outcomes(original, set()) == decided_outcomes(kept_all, set())
        with fresh_engine(databases, migrated_database, settings) as without:
            run_without(without, transactions, applied, left_out)
            attributes = settings.person_profiles == "always"
            assert state(original, attributes=attributes) == state(without, attributes=attributes)
            assert decided_outcomes(original, set(left_out.link_ids)) == decided_outcomes(without, set())
        original.undo(undo.undo_id)
        assert state(original) == before
        assert decided_outcomes(original, set()) == outcomes_before
