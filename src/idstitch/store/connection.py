"""What every module above the store holds: a `Connection` that speaks one SQL dialect.

Store functions take `conn` and write SQL with `?` marks (sqlite-utils' habit). Where the two
databases differ, the SQL asks `conn.dialect` (store/dialects.py) for the piece that differs
instead of testing which database it talks to.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

from idstitch.store.dialects import Dialect


class Row(Protocol):
    """A result row: by position, or by column name (`sqlite3.Row` and the PostgreSQL row)."""

    def __getitem__(self, key: int | str, /) -> Any: ...
    def __len__(self) -> int: ...
    def keys(self) -> list[str]: ...


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """One database session. Transactions are explicit (`BEGIN` ... `COMMIT`), never implicit."""

    @property
    def dialect(self) -> Dialect: ...

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Any: ...
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Any: ...
    def close(self) -> None: ...


@functools.lru_cache(maxsize=4096)
def to_pyformat(sql: str, *, quotes: str = "'\"", backslash_escapes: bool = False) -> str:
    """`?` marks to a driver's `%s` (and a literal `%` to `%%`), outside quoted text: psycopg's,
    and clickhouse-connect's (whose literals also escape with a backslash)."""
    out: list[str] = []
    quote: str | None = None
    escaped = False
    for char in sql:
        if char == "%":
            out.append("%%")
            escaped = False
        elif quote is not None:
            out.append(char)
            if escaped:
                escaped = False
            elif backslash_escapes and char == "\\":
                escaped = True
            elif char == quote:
                quote = None
        elif char in quotes:
            quote = char
            out.append(char)
        elif char == "?":
            out.append("%s")
        else:
            out.append(char)
    return "".join(out)


def returning_id(conn: Connection, sql: str, parameters: Sequence[Any]) -> int:
    """Run an INSERT and return the id of the row it made (both backends support RETURNING)."""
    row = conn.execute(sql + " RETURNING id", parameters).fetchone()
    return int(row[0])
