"""Which engine answers an analytics read (counts, charts, lists filtered by what persons did):
the analytics copy once it has caught up with the store, else the store itself.

A read first lets the copy catch up (analytics/feeder.py `catch_up`: a merge made a moment ago
is in the next answer). When the copy is too far behind (its first fill), failing, or absent, the
store answers, and `answered_by` says so and how far behind the copy is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from idstitch.analytics.feeder import Feeder
from idstitch.query.compiler import Compiler, run_guarded
from idstitch.query.filters import FilterError
from idstitch.store.connection import Connection

T = TypeVar("T")
# Who answered when the copy did not (which database the store is, nothing above it knows).
STORE = "store"
log = logging.getLogger("idstitch.analytics")


def answer_on_copy(
    feeder: Feeder | None, store: Connection, project_id: int, now: datetime, fn: Callable[[Connection, Compiler], T]
) -> tuple[T, dict[str, Any]]:
    """`fn(conn, compiler)` on the analytics copy if it has caught up, else on `store` (a read
    connection already under the query guard of `run_guarded`); and who answered."""

    def on_store(lag: dict[str, Any] | None) -> tuple[T, dict[str, Any]]:
        return fn(store, Compiler(store, project_id, now)), {"engine": STORE, "analytics": lag}

    if feeder is None:
        return on_store(None)
    lag = feeder.catch_up()
    if not lag.caught_up:
        return on_store(lag.to_json())
    try:
        return run_guarded(feeder.engine.reader(), project_id, now, fn, catalog=store), {
            "engine": feeder.engine.name, "analytics": lag.to_json(),
        }
    except FilterError:
        raise
    except Exception as error:  # the copy failed, not the question: the store answers it
        log.exception("the analytics copy could not answer; the store does")
        return on_store({**lag.to_json(), "caught_up": False, "error": f"{type(error).__name__}: {error}"})
