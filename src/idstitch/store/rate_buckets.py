"""Rate-limit buckets that every server of a store shares (server/ratelimit.py uses them).

With several servers a limit "per ingest token" must count what all of them let through, so
the bucket is a row in the database, taken and refilled in one statement by the function
`take_rate_tokens` (store/postgres_schema.py), on the database's clock. One server alone (SQLite)
keeps its buckets in memory instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from idstitch.store.connection import Connection


class SharedRateBuckets:
    """Token buckets in the store, keyed by name; each thread uses a connection of its own."""

    def __init__(self, connect: Callable[[], Connection]) -> None:
        self._connect = connect
        self._local = threading.local()

    def take(self, key: str, cost: float, rate: float, capacity: float) -> float:
        """Take `cost` tokens and return 0.0, or take nothing and return the seconds to wait."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return float(conn.execute("SELECT take_rate_tokens(?, ?, ?, ?)", (key, cost, rate, capacity)).fetchone()[0])
