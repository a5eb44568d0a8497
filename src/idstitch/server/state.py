"""What every route shares: the writer, read connections, and the projects by token."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from idstitch.clock import Now, utc_now
from idstitch.ingest.pipeline import Writer
from idstitch.store.projects import Project, SecretKey, key_for_secret, project_by_id, project_by_token
from idstitch.store.sqlite import DATABASE_FILE, open_database


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Process settings (settings.SERVER_SETTINGS), passed in by the CLI or by tests."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000
    ingest_token: str | None = None
    secret_key: str | None = None
    max_body_bytes: int = 20 * 1024 * 1024
    max_batch_events: int = 10_000
    ingest_rate_limit: int = 50_000
    api_rate_limit: int = 100

    @property
    def database(self) -> Path:
        return self.data_dir / DATABASE_FILE

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> ServerConfig:
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})


@dataclass
class AppState:
    config: ServerConfig
    writer: Writer
    now: Now = utc_now
    _local: threading.local = field(default_factory=threading.local)
    _projects: dict[str, Project] = field(default_factory=dict)

    def reader(self) -> sqlite3.Connection:
        """This thread's read-only connection (readers never block the writer in WAL mode)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = open_database(self.config.database, read_only=True)
        return conn

    def project_for_token(self, token: str) -> Project | None:
        project = self._projects.get(token)
        if project is None:
            project = project_by_token(self.reader(), token)
            if project is not None:
                self._projects[token] = project
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
