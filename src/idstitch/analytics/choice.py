"""Which analytics engine a server runs, from its `analytics` setting.

    auto        DuckDB in the data directory on the SQLite store; none on a store that several
                servers share (each would keep a copy of its own: name one engine for all)
    duckdb      DuckDB in the data directory
    off         none: every question is answered by the store
"""

from __future__ import annotations

from pathlib import Path

from idstitch.analytics.duckdb_engine import ANALYTICS_FILE, DuckDBEngine
from idstitch.analytics.engine import AnalyticsEngine
from idstitch.errors import InvalidSetting

CHOICES = ("auto", "duckdb", "off")


def open_engine(setting: str, data_dir: Path, *, shared_store: bool) -> AnalyticsEngine | None:
    """The engine `setting` names (not yet prepared), or None for none."""
    if setting == "auto":
        setting = "off" if shared_store else "duckdb"
    if setting == "off":
        return None
    if setting == "duckdb":
        return DuckDBEngine(data_dir / ANALYTICS_FILE)
    raise InvalidSetting(f"analytics {setting!r} is not one of {', '.join(CHOICES)}")
