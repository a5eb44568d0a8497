"""One site under test: a fresh SQLite store driven through the real app (ingest, merges, splits,
undo, erasure), and a `Feeder` on it feeding the session's analytics engine. Every question is
asked of both sides with the query layer's own functions, so the store's answer (the reference)
and the copy's can be compared whole.

The session has one engine (ClickHouse on chdb allows one per process); each site's store has
an identity of its own, so the feeder empties the copy and starts over on it (analytics/feeder.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from idstitch.analytics.engine import AnalyticsEngine
from idstitch.analytics.feeder import Feeder
from idstitch.query import counts, people
from idstitch.query.compiler import EVENTS, PERSONS, run_guarded, where_clause
from idstitch.query.filters import FilterError, parse_filter
from idstitch.server.app import create_app
from idstitch.server.state import ServerConfig
from idstitch.store.connection import Connection
from idstitch.store.reads import encode_cursor
from tests.conftest import INGEST_TOKEN, SECRET_KEY

# Event times are days (and minutes) after T0, a Monday; the server's clock stands at NOW, after
# every event, and queries resolve relative times ("-30d") against it too.
T0 = datetime(2025, 1, 6, tzinfo=timezone.utc)
NOW = T0 + timedelta(days=80)


def at(day: int, minute: int = 0) -> str:
    return (T0 + timedelta(days=day, minutes=minute)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Refused:
    """A query both sides must refuse alike (a FilterError: a segment gone, a property on persons)."""

    reason: str


class Site:
    """The app on its store, the store's read connection, and the feeder of the copy."""

    def __init__(self, client: TestClient, engine: AnalyticsEngine) -> None:
        self.client = client
        state = client.app.state.idstitch  # type: ignore[attr-defined]
        self.store = state.store
        self.engine = engine
        self.conn: Connection = self.store.connect(read_only=True)
        self.project_id = int(self.conn.execute("SELECT id FROM projects ORDER BY id LIMIT 1").fetchone()[0])
        self.feeder = self.new_feeder()

    def new_feeder(self) -> Feeder:
        """A feeder as a server (re)start makes one: it resumes where the copy's position says."""
        return Feeder(lambda: self.store.connect(read_only=True), self.engine, now=lambda: NOW)

    def close(self) -> None:
        self.feeder.stop()
        self.conn.close()

    # -- writing through the app ---------------------------------------------------------------

    def send(self, *messages: dict[str, Any]) -> list[dict[str, Any]]:
        response = self.client.post("/ingest/batch", json={"token": INGEST_TOKEN, "batch": list(messages)})
        assert response.status_code == 200, response.text
        return response.json()["results"]  # type: ignore[no-any-return]

    def admin(self, path: str, body: dict[str, Any]) -> Any:
        """An admin request; None when refused (no such person, nothing to split, already undone)."""
        response = self.client.post(path, json=body)
        assert response.status_code < 500, response.text
        return response.json() if response.status_code < 300 else None

    def merge(self, target: str, source: str) -> Any:
        return self.admin("/api/persons/merge", {"target_distinct_id": target, "source_distinct_id": source})

    def split(self, distinct_id: str, *, only_this_id: bool) -> Any:
        person_id = self.person_id(distinct_id)
        if person_id is None:
            return None
        return self.admin(f"/api/persons/{person_id}/split", {"distinct_ids": [distinct_id]} if only_this_id else {})

    def undo(self, link_id: int) -> Any:
        return self.admin(f"/api/links/{link_id}/undo", {})

    def erase(self, distinct_id: str, *, keep_anonymised_counts: bool = False, suppress: bool = False) -> Any:
        return self.admin(
            "/api/privacy/delete",
            {"distinct_id": distinct_id, "keep_anonymised_counts": keep_anonymised_counts, "suppress": suppress},
        )

    def save_segment(self, name: str, document: dict[str, Any]) -> int:
        response = self.client.post("/api/segments", json={"name": name, "description": "", "filter": document})
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    # -- reading the store -----------------------------------------------------------------

    def person_id(self, distinct_id: str) -> str | None:
        row = self.conn.execute(
            "SELECT person_id FROM distinct_ids WHERE project_id = ? AND distinct_id = ?", (self.project_id, distinct_id)
        ).fetchone()
        return row[0] if row else None

    def undoable_links(self) -> list[int]:
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM links WHERE project_id = ? AND kind IN ('identify', 'alias', 'merge', 'split', 'undo') ORDER BY id",
            (self.project_id,),
        )]

    # -- the copy ------------------------------------------------------------------------------

    def catch_up(self) -> None:
        lag = self.feeder.catch_up()
        assert lag.caught_up, lag.to_json()

    def copy(self) -> Connection:
        return self.engine.reader()

    # -- questions, asked of either side -------------------------------------------------------

    def ask(self, conn: Connection, question: Callable[[Connection, Any], Any]) -> Any:
        """`question(conn, compiler)` under the query guard, saved segments read from the store;
        a FilterError is an answer too."""
        try:
            return run_guarded(conn, self.project_id, NOW, question, catalog=self.conn)
        except FilterError as error:
            return Refused(str(error))

    def count(self, conn: Connection, spec: counts.CountSpec, filter_document: Any = None, segment_id: int | None = None) -> Any:
        node = parse_filter(filter_document) if filter_document is not None else None
        target = PERSONS if spec.measure == "new_persons" else EVENTS
        return self.ask(conn, lambda c, compiler: counts.count(
            c, self.project_id, spec, where_clause(compiler, target, node, segment_id), NOW
        ))

    def person_ids(self, conn: Connection, filter_document: Any = None, segment_id: int | None = None, *, page: int = 1000) -> Any:
        """The ids of the persons the filter keeps, in the order of a persons list (newest first),
        walked page by page as query/people.persons_page walks them."""
        node = parse_filter(filter_document) if filter_document is not None else None

        def walk(c: Connection, compiler: Any) -> list[str]:
            where = where_clause(compiler, PERSONS, node, segment_id)
            found: list[str] = []
            cursor: tuple[str, str] | None = None
            while True:
                rows = person_rows_page(c, self.project_id, where, page, cursor)
                found += [person_id for person_id, _ in rows[:page]]
                if len(rows) <= page:
                    return found
                cursor = rows[page - 1][1], rows[page - 1][0]

        return self.ask(conn, walk)


def person_rows_page(
    conn: Connection, project_id: int, where: Any, limit: int, cursor: tuple[str, str] | None
) -> list[tuple[str, str]]:
    """The first query of query/people.persons_page: `(id, created_at)` of up to `limit + 1`
    persons after `cursor` (`(created_at, id)`). The rest of persons_page reads each whole person
    from the store; the copy holds only what the filters need."""
    rows = people.newest_rows(conn, project_id, where, limit + 1, encode_cursor(*cursor) if cursor else None)
    return [(r[0], r[1]) for r in rows]


@contextmanager
def open_site(directory: Path, engine: AnalyticsEngine) -> Iterator[Site]:
    """A fresh store in `directory` (a directory of its own per site), on the app with its own
    analytics off: the test's feeder is the only one writing the session's copy."""
    config = ServerConfig(
        data_dir=directory, ingest_token=INGEST_TOKEN, secret_key=SECRET_KEY, analytics="off",
        api_rate_limit=1_000_000,
    )
    with TestClient(create_app(config, now=lambda: NOW)) as client:
        client.headers["Authorization"] = f"Bearer {SECRET_KEY}"
        site = Site(client, engine)
        try:
            yield site
        finally:
            site.close()
