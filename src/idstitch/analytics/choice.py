"""Which analytics engine a server runs, from its `analytics` setting.

    auto          DuckDB in the data directory on the SQLite store; none on a store that several
                  servers share (each would keep a copy of its own: name one engine for all)
    duckdb        DuckDB in the data directory
    clickhouse://user:password@host:port/database
                  a ClickHouse server (HTTP; `clickhouses://` for HTTPS), which the servers
                  sharing a store share too: one of them feeds it at a time (feeder.py)
    chdb:/path    ClickHouse in this process (chdb), its data in that directory
    off           none: every question is answered by the store

ClickHouse needs clickhouse-connect (`pip install 'idstitch[clickhouse]'`), and chdb the chdb
package too; neither is part of the base install.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from idstitch.analytics.duckdb_engine import ANALYTICS_FILE, DuckDBEngine
from idstitch.analytics.engine import AnalyticsEngine
from idstitch.errors import InvalidSetting

if TYPE_CHECKING:
    from idstitch.analytics.clickhouse_engine import ClickHouseEngine

CHOICES = ("auto", "duckdb", "clickhouse://user:password@host:port/database", "chdb:/path", "off")


def open_engine(setting: str, data_dir: Path, *, shared_store: bool) -> AnalyticsEngine | None:
    """The engine `setting` names (not yet prepared), or None for none."""
    if setting == "auto":
        setting = "off" if shared_store else "duckdb"
    if setting == "off":
        return None
    if setting == "duckdb":
        return DuckDBEngine(data_dir / ANALYTICS_FILE)
    if setting.startswith(("clickhouse://", "clickhouses://")):
        return _clickhouse().server(setting)
    if setting.startswith("chdb:"):
        path = setting.removeprefix("chdb:")
        if not path:
            raise InvalidSetting("analytics 'chdb:' names no directory: chdb:/path/to/dir")
        return _clickhouse().in_process(str(Path(path).expanduser().resolve()))
    shown = setting.split("@", 1)[-1] if "://" in setting else setting
    raise InvalidSetting(f"analytics {shown!r} is not one of {', '.join(CHOICES)}")


def _clickhouse() -> type[ClickHouseEngine]:
    try:
        from idstitch.analytics.clickhouse_engine import ClickHouseEngine
    except ImportError as error:
        raise InvalidSetting(
            f"analytics on ClickHouse needs clickhouse-connect: pip install 'idstitch[clickhouse]' ({error})"
        ) from None
    return ClickHouseEngine
