"""The SQL that differs between the two stores, side by side: one `Dialect` per backend.

Store and query code asks `conn.dialect` for the piece it needs (by what it does, never by
which database it is), so the whole difference between SQLite and PostgreSQL reads here.
"""

from __future__ import annotations

from dataclasses import dataclass

# PostgreSQL advisory lock keys of our own (hashed ids never take these values in practice,
# and a collision would only make two writes wait for each other).
MIGRATIONS_LOCK = 0x1D57_17C4_0000_0001
WRITES_LOCK = 0x1D57_17C4_0000_0002


@dataclass(frozen=True, slots=True)
class Dialect:
    """The pieces of SQL that differ between the backends, by what they do.

    `json_value(doc, path)` reads one JSON value as an SQL value whose type follows the JSON
    type; `json_text` reads it as text. Paths are SQLite JSON paths (`$."key"`), bound as
    parameters; the PostgreSQL dialect turns them into `jsonb_path` text at bind time.
    """

    name: str
    # "INSERT OR IGNORE INTO" / "INSERT INTO ... ON CONFLICT DO NOTHING": see `insert_ignore`.
    insert_ignore_prefix: str
    insert_ignore_suffix: str
    # The greatest and least of two values (SQLite's two-argument max/min).
    greatest: str
    least: str
    # Starts a transaction that runs alone: no other writer of the store runs until it ends.
    begin_exclusive: str

    def insert_ignore(self, table_and_columns: str, values: str) -> str:
        """An insert that skips rows whose key is already there."""
        return f"{self.insert_ignore_prefix} {table_and_columns} {values}{self.insert_ignore_suffix}"


SQLITE = Dialect(
    name="sqlite",
    insert_ignore_prefix="INSERT OR IGNORE INTO",
    insert_ignore_suffix="",
    greatest="max",
    least="min",
    begin_exclusive="BEGIN IMMEDIATE",
)

POSTGRES = Dialect(
    name="postgresql",
    insert_ignore_prefix="INSERT INTO",
    insert_ignore_suffix=" ON CONFLICT DO NOTHING",
    greatest="greatest",
    least="least",
    begin_exclusive=f"BEGIN; SELECT pg_advisory_xact_lock({WRITES_LOCK})",
)
