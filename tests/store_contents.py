"""What a store holds, table by table, for tests that claim a request "changes nothing".

A count of persons misses a changed attribute, a stray warning or a rewritten setting; a digest
of every row of every table does not. Tests may read store internals; this is the one place
that knows how each database lists its tables.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from idstitch.store.connection import Connection

_TABLES = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
    # Partitioned tables too (relkind 'p'); their partitions are listed as tables of their own.
    "postgresql": "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()",
}


class TableDigest(NamedTuple):
    rows: int
    sha256: str


def table_digests(conn: Connection) -> dict[str, TableDigest]:
    """Every table of the store: its row count and a digest of its rows (in an order of their own,
    so the physical order of the rows does not matter)."""
    digests = {}
    for (table,) in conn.execute(_TABLES[conn.dialect.name]).fetchall():
        rows = sorted(repr(tuple(row)) for row in conn.execute(f'SELECT * FROM "{table}"').fetchall())
        digest = hashlib.sha256("\n".join(rows).encode("utf-8", "surrogatepass")).hexdigest()
        digests[table] = TableDigest(len(rows), digest)
    return digests


def changed_tables(before: dict[str, TableDigest], after: dict[str, TableDigest]) -> dict[str, str]:
    """The tables whose rows differ, each with its row counts before and after."""
    return {
        table: f"{before.get(table, TableDigest(0, '')).rows} rows -> {after.get(table, TableDigest(0, '')).rows} rows"
        for table in sorted(before.keys() | after.keys())
        if before.get(table) != after.get(table)
    }
