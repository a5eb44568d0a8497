"""Retention, through the writer: each project's events older than its `events_retention_days`
leave the store, batch by batch (store/retention.py says what goes and what a replay keeps).

    expire_events(writer, store)          one pass over every project (`idstitch expire-events`)
    expire_periodically(writer, store)    the server's task: a pass at start, then every EXPIRY_SECONDS

Each batch is one write of the writer, ordered with ingestion as every write is, and run alone
(on PostgreSQL under the exclusive writes lock, so no identity operation is in flight while it
reads the link log). It reads the project's setting, and the time (the writer's clock), in its
own transaction: a change of the setting is obeyed from the next batch on. Persons are not
changed, so the writer keeps its cache.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from idstitch.ingest.pipeline import WriteContext, Writer
from idstitch.store import retention
from idstitch.store.backends import Store
from idstitch.store.retention import BATCH_EVENTS, Expired

log = logging.getLogger(__name__)

# How often the server expires events (and once at start). Read at each pass: a test may shorten it.
EXPIRY_SECONDS = 300.0


@dataclass(slots=True)
class ProjectExpiry:
    """What a pass did to one project."""

    project_id: int
    days: int | None = None
    before: str | None = None
    expired: Expired = field(default_factory=Expired)

    def to_json(self) -> dict[str, Any]:
        return {
            "project_id": self.project_id,
            "events_retention_days": self.days,
            "before": self.before,
            "deleted_events": self.expired.deleted,
            "retired_events": self.expired.retired,
            "deleted_sessions": self.expired.sessions,
        }


def retention_days(store: Store) -> dict[int, int]:
    """Each project with `events_retention_days` set, and its days (a read of its own)."""
    conn = store.connect(read_only=True)
    try:
        return retention.retention_days(conn)
    finally:
        conn.close()


def expire_batch(project: ProjectExpiry, resume: str | None, limit: int) -> Callable[[WriteContext], Expired | None]:
    """One batch of the project's expired events, with the setting as its transaction reads it."""

    def expire(context: WriteContext) -> Expired | None:
        days = retention.project_retention_days(context.conn, project.project_id)
        if days is None:
            return None
        project.days, project.before = days, retention.cutoff(context.now(), days)
        return retention.expire_batch(context.conn, project.project_id, project.before, resume=resume, limit=limit)

    return expire


async def expire_events(writer: Writer, store: Store, *, limit: int = BATCH_EVENTS) -> list[ProjectExpiry]:
    """Expire every project's old events now, in batches of at most `limit` events."""
    done: list[ProjectExpiry] = []
    for project_id in sorted(await asyncio.to_thread(retention_days, store)):
        project = ProjectExpiry(project_id)
        resume: str | None = None
        while True:
            # keeps_cache: persons, their ids and attributes are not touched.
            batch = await writer.write(expire_batch(project, resume, limit), keeps_cache=True)
            if batch is None:
                break
            project.expired.add(batch)
            if not batch.more:
                break
            resume = batch.resume
        done.append(project)
    return done


async def expire_periodically(writer: Writer, store: Store) -> None:
    """Expire events at once, then every EXPIRY_SECONDS, until cancelled; a failed pass is logged
    and the next one tries again."""
    while True:
        try:
            for project in await expire_events(writer, store):
                if project.expired.deleted or project.expired.retired or project.expired.sessions:
                    log.info("retention: %s", project.to_json())
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the store may be down or full: the next pass tries again
            log.exception("retention: expiring events failed; trying again in %g s", EXPIRY_SECONDS)
        await asyncio.sleep(EXPIRY_SECONDS)
