"""What every route shares: the writer, read connections, and the projects by token."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from idstitch.analytics.feeder import Feeder
from idstitch.clock import Now, utc_now
from idstitch.ingest.pipeline import Writer
from idstitch.server.query_slots import QuerySlots
from idstitch.store.backends import Store, open_store
from idstitch.store.connection import Connection
from idstitch.store.projects import Project, SecretKey, key_for_secret, project_by_id, project_by_token

# How long a project's settings are trusted before they are read again: a setting changed
# through one server (or the CLI) is obeyed by every server within this time.
PROJECT_TTL_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Process settings (settings.SERVER_SETTINGS), passed in by the CLI or by tests."""

    data_dir: Path
    database: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    ingest_token: str | None = None
    secret_key: str | None = None
    max_body_bytes: int = 20 * 1024 * 1024
    max_batch_events: int = 10_000
    ingest_rate_limit: int = 50_000
    api_rate_limit: int = 100
    query_slots: int = 4
    query_queue: int = 16
    header_timeout: int = 10
    keep_alive_timeout: int = 5
    max_connections: int = 4096
    analytics: str = "auto"

    def store(self) -> Store:
        return open_store(self.database, self.data_dir)

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> ServerConfig:
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})


@dataclass
class AppState:
    config: ServerConfig
    store: Store
    writer: Writer
    now: Now = utc_now
    # The analytics copy's feeder (its engine: `analytics.engine`), or None without one.
    analytics: Feeder | None = None
    slots: QuerySlots = field(init=False)
    _local: threading.local = field(default_factory=threading.local)
    _projects: dict[str, tuple[float, Project]] = field(default_factory=dict)
    _readers: list[Connection] = field(default_factory=list)
    _readers_lock: threading.Lock = field(default_factory=threading.Lock)
    # What still holds the data of an erasure this process made (store.forget_erased), if anything.
    erasure_pending: str | None = None

    def __post_init__(self) -> None:
        self.slots = QuerySlots(self.store, size=self.config.query_slots, queue=self.config.query_queue)

    def reader(self) -> Connection:
        """This thread's read-only connection (readers never block the writer in WAL mode)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.store.connect(read_only=True)
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def close(self) -> None:
        """Close every reader (a database server counts their connections until then)."""
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()
        self.slots.close()

    def project_for_token(self, token: str) -> Project | None:
        cached = self._projects.get(token)
        if cached is not None and time.monotonic() - cached[0] < PROJECT_TTL_SECONDS:
            return cached[1]
        project = project_by_token(self.reader(), token)
        if project is None:
            self._projects.pop(token, None)
        else:
            self._projects[token] = (time.monotonic(), project)
        return project

    def project(self, project_id: int) -> Project:
        project = project_by_id(self.reader(), project_id)
        assert project is not None, f"project {project_id} vanished"
        return project

    def forget_project(self, project: Project) -> None:
        """Drop a cached project after its settings changed, so the next request reads them anew."""
        self._projects.pop(project.ingest_token, None)

    def key_for_secret(self, secret: str) -> SecretKey | None:
        return key_for_secret(self.reader(), secret)
