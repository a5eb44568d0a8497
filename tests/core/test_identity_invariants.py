"""Engine-level invariants under random sequences of identity commands (identity-rules.md §1, §3).

Checked on the SQLite tables themselves after every transaction:

* every distinct id seen has exactly one person: each `distinct_ids` row points at an existing
  person, and every person has at least one distinct id;
* no person holds more than `max_user_ids` user ids unless it is excused: an admin merge made it,
  or it absorbed a person an admin merge made. A split ends the excuse for the ids it splits off.

`hypothesis.event` and `target` show that runs do reach the limit (`--hypothesis-show-statistics`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given, note, settings, target
from hypothesis import strategies as st

from idstitch.commands import Alias, Identify, Merge, Track
from idstitch.engine import Batch
from idstitch.errors import InvalidRequest, NotFound
from idstitch.settings import DEFAULT_PROJECT_SETTINGS
from idstitch.store.sqlite import SQLiteWriteSession
from tests.core.harness import PROJECT_ID, RECEIVED_AT, Engine, admin_merge, alias, identify, split, track

USER_IDS = st.sampled_from(["user-1", "user-2", "user-3"])
ANONYMOUS_IDS = st.sampled_from(["anon-1", "anon-2", "anon-3"])
# Any id, including an illegal one, in any role.
ANY_ID = st.sampled_from(["anon-1", "anon-2", "anon-3", "user-1", "user-2", "user-3", "null"])
MINUTE = st.integers(0, 120)


@dataclass(frozen=True)
class SplitOf:
    """Split the person owning `distinct_id` at the moment the command runs: all ids, or only it."""

    distinct_id: str
    only_this_id: bool


TRACK = st.builds(
    lambda d, m, personless: track(d, minute=m, process_person=not personless), ANY_ID, MINUTE, st.booleans()
)
IDENTIFY = st.builds(
    lambda u, a, m: identify(u, a, minute=m),
    st.one_of(USER_IDS, USER_IDS, ANY_ID),
    st.one_of(ANONYMOUS_IDS, ANONYMOUS_IDS, st.none(), ANY_ID),
    MINUTE,
)
# Identify is drawn most often: it is the operation that meets max_user_ids.
COMMANDS = st.one_of(
    TRACK, TRACK, IDENTIFY, IDENTIFY, IDENTIFY,
    st.builds(lambda t, s, m: alias(t, s, minute=m), ANY_ID, ANY_ID, MINUTE),
    st.builds(admin_merge, ANY_ID, ANY_ID),
    st.builds(SplitOf, ANY_ID, st.booleans()),
)
# Each inner list is one transaction (one Batch), so the engine's caches meet the store's state.
TRANSACTIONS = st.lists(st.lists(COMMANDS, min_size=1, max_size=6), min_size=1, max_size=6)


def event_id(command: Any) -> set[str]:
    """The id of an event that must end up owned by a person (personless events own nothing)."""
    event = getattr(command, "event", None)
    return {event.distinct_id} if event is not None and event.process_person else set()


def named_ids(command: Any) -> set[str]:
    """Every id a command names; no other id may ever be mapped."""
    if isinstance(command, Identify):
        named = {command.user_id, command.anonymous_id}
    elif isinstance(command, (Alias, Merge)):
        named = {command.target, command.source}
    else:
        named = set()
    return (named | event_id(command)) - {None}


def describe(command: Any) -> str:
    """A command as the line of a test that would replay it."""
    if isinstance(command, SplitOf):
        which = "only that id" if command.only_this_id else "all ids"
        return f"split the person of {command.distinct_id!r} ({which})"
    if isinstance(command, Merge):
        return f"admin_merge({command.target!r}, {command.source!r})"
    event = command.event
    when = f"minute={(event.timestamp.hour - 9) * 60 + event.timestamp.minute}"
    if isinstance(command, Track):
        return f"track({event.distinct_id!r}, {when}" + (", process_person=False)" if not event.process_person else ")")
    if isinstance(command, Identify):
        return f"identify({command.user_id!r}, {command.anonymous_id!r}, {when})"
    return f"alias({command.target!r}, {command.source!r}, {when})"


class Run:
    """Applies transactions and remembers what the invariants need: ids seen, ids named, and the ids
    of the persons excused from `max_user_ids`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.seen: set[str] = set()
        self.named: set[str] = set()
        self.excused: set[str] = set()
        # The most user ids any person not excused held after a transaction.
        self.fullest = 0

    def transaction(self, commands: list[Any]) -> None:
        events = tuple(c for c in commands if not isinstance(c, SplitOf))
        self.engine.run(lambda batch: [self.apply(batch, c) for c in commands], events)

    def apply(self, batch: Batch, command: Any) -> None:
        if isinstance(command, SplitOf):
            person_id = self.engine.person_id(command.distinct_id)
            if person_id is None:
                return
            split_off = {command.distinct_id} if command.only_this_id else {d for d, _ in self.ids_of(person_id)}
            try:
                batch.apply(split(person_id, (command.distinct_id,) if command.only_this_id else None))
            except InvalidRequest:  # a person with one id has nothing to split
                return
            if self.excused & split_off:
                event("a split ended an admin merge's excuse")
            # The ids split off are persons of their own, which no admin merged; the ids left
            # behind stay the person the admin made.
            self.excused -= split_off
            return
        try:
            batch.apply(command)
        except NotFound:  # an admin merge names an id nobody owns
            return
        self.seen |= event_id(command)
        self.named |= named_ids(command)
        if isinstance(command, Merge) and command.event is None:
            # An admin merge: the resulting person may exceed max_user_ids, until a split.
            self.excused |= {d for d, _ in self.ids_of(self.engine.person_id(command.target))}
        # The excuse follows the person: ids that joined an excused person are excused with it.
        for person_id in {self.engine.person_id(d) for d in self.excused}:
            self.excused |= {d for d, _ in self.ids_of(person_id)}

    def ids_of(self, person_id: str | None) -> list[tuple[str, bool]]:
        return [
            (d, bool(u))
            for d, u in self.engine.conn.execute(
                "SELECT distinct_id, is_user_id FROM distinct_ids WHERE person_id = ?", (person_id,)
            )
        ]

    def check(self, max_user_ids: int | None) -> None:
        conn = self.engine.conn
        orphans = [row[0] for row in conn.execute(
            "SELECT distinct_id FROM distinct_ids d WHERE NOT EXISTS (SELECT 1 FROM persons p WHERE p.id = d.person_id)"
        )]
        empty = [row[0] for row in conn.execute(
            "SELECT id FROM persons p WHERE NOT EXISTS (SELECT 1 FROM distinct_ids d WHERE d.person_id = p.id)"
        )]
        mapped = conn.execute(
            "SELECT distinct_id, count(*) FROM distinct_ids WHERE project_id = ? GROUP BY distinct_id", (PROJECT_ID,)
        ).fetchall()
        assert (orphans, empty) == ([], []), "distinct ids without a person, persons without a distinct id"
        assert all(count == 1 for _, count in mapped)
        # Every event's id has a person; no id appears that no command named.
        assert self.seen <= {d for d, _ in mapped} <= self.named
        # Both ids of every link that was not refused have a person.
        linked = conn.execute(
            "SELECT target_distinct_id, source_distinct_id FROM links"
            " WHERE outcome IN ('created', 'attached', 'merged', 'already_linked')"
        ).fetchall()
        assert {d for pair in linked for d in pair if d is not None} <= {d for d, _ in mapped}
        if max_user_ids is None:
            return
        most = 0
        for person_id, user_ids in conn.execute(
            "SELECT person_id, count(*) FROM distinct_ids WHERE is_user_id = 1 GROUP BY person_id"
        ).fetchall():
            ids = {d for d, _ in self.ids_of(person_id)}
            if ids & self.excused:
                if user_ids > max_user_ids:
                    event("an admin-merged person held more user ids than the limit")
                continue
            assert user_ids <= max_user_ids, f"person {sorted(ids)} holds {user_ids} user ids without an admin merge"
            most = max(most, user_ids)
        self.fullest = max(self.fullest, most)


@pytest.fixture(scope="module")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("invariants")


_runs = iter(range(1_000_000))


@settings(max_examples=60, deadline=None)
@given(transactions=TRANSACTIONS, max_user_ids=st.sampled_from([1, 2, 1, None]))
def test_every_distinct_id_has_exactly_one_person_and_user_ids_stay_within_the_limit(
    databases: Path, migrated_database: Path, transactions: list[list[Any]], max_user_ids: int | None
) -> None:
    note("\n".join(f"transaction {n}: " + "; ".join(map(describe, t)) for n, t in enumerate(transactions, 1)))
    path = databases / f"run-{next(_runs)}.db"
    shutil.copyfile(migrated_database, path)
    session = SQLiteWriteSession(path, lambda: RECEIVED_AT)
    session.conn.execute("PRAGMA synchronous = OFF")
    engine = Engine(session, DEFAULT_PROJECT_SETTINGS.updated({"max_user_ids": max_user_ids}))
    try:
        run = Run(engine)
        for commands in transactions:
            run.transaction(commands)
            run.check(max_user_ids)
        if max_user_ids is not None:
            if run.fullest == max_user_ids:
                event(f"a person not admin-merged reached the limit of {max_user_ids} user ids")
            target(run.fullest / max_user_ids, label="user ids of the fullest person not admin-merged, over the limit")
    finally:
        engine.close()
