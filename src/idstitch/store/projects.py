"""Projects, their tokens and secret keys, and their settings.

Ingest tokens are public (they ship in web pages) and stored as they are. Secret keys are
stored as SHA-256 hashes: a leaked database file does not leak a key. A key is random enough
(32 bytes) that a salted slow hash would add nothing but latency on every API call.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import msgspec

from idstitch.clock import format_time
from idstitch.settings import ProjectSettings, project_settings_from_json
from idstitch.store.connection import Connection, Row, returning_id
from idstitch.store.persons import encode_json

INGEST_TOKEN_PREFIX = "phc_"
SECRET_KEY_PREFIX = "sk_"


@dataclass(frozen=True, slots=True)
class Project:
    id: int
    name: str
    ingest_token: str
    settings: ProjectSettings


@dataclass(frozen=True, slots=True)
class SecretKey:
    id: int
    project_id: int
    label: str


def new_ingest_token() -> str:
    # `phc_` like PostHog's project tokens, so clients that check the prefix accept it.
    return INGEST_TOKEN_PREFIX + secrets.token_urlsafe(24)


def new_secret_key() -> str:
    return SECRET_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _project(row: Row) -> Project:
    return Project(row["id"], row["name"], row["ingest_token"], project_settings_from_json(msgspec.json.decode(row["settings"])))


def project_by_token(conn: Connection, token: str) -> Project | None:
    row = conn.execute("SELECT * FROM projects WHERE ingest_token = ?", (token,)).fetchone()
    return _project(row) if row else None


def project_by_id(conn: Connection, project_id: int) -> Project | None:
    row = conn.execute("SELECT * FROM projects WHERE id = ?", (project_id,)).fetchone()
    return _project(row) if row else None


def key_for_secret(conn: Connection, secret: str) -> SecretKey | None:
    row = conn.execute(
        "SELECT id, project_id, label FROM secret_keys WHERE key_hash = ? AND revoked_at IS NULL",
        (hash_key(secret),),
    ).fetchone()
    return SecretKey(row[0], row[1], row[2]) if row else None


def create_project(conn: Connection, name: str, now: datetime, ingest_token: str | None = None) -> Project:
    token = ingest_token or new_ingest_token()
    project_id = returning_id(
        conn, "INSERT INTO projects (name, ingest_token, settings, created_at) VALUES (?, ?, '{}', ?)",
        (name, token, format_time(now)),
    )
    project = project_by_id(conn, project_id)
    assert project is not None
    return project


def add_secret_key(conn: Connection, project_id: int, label: str, now: datetime, secret: str | None = None) -> str:
    """Store a secret key (a new random one unless given) and return it; only its hash is kept.
    A given key stored before keeps its row: a revoked one stays revoked (revocation wins over
    `IDSTITCH_SECRET_KEY` given again at the next start)."""
    secret = secret or new_secret_key()
    conn.execute(
        "INSERT INTO secret_keys (project_id, label, key_hash, created_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (key_hash) DO NOTHING",
        (project_id, label, hash_key(secret), format_time(now)),
    )
    return secret


def is_revoked(conn: Connection, secret: str) -> bool:
    row = conn.execute("SELECT revoked_at FROM secret_keys WHERE key_hash = ?", (hash_key(secret),)).fetchone()
    return row is not None and row[0] is not None


def save_settings(conn: Connection, project_id: int, settings: ProjectSettings) -> None:
    conn.execute("UPDATE projects SET settings = ? WHERE id = ?", (encode_json(settings.to_json()), project_id))


@dataclass(frozen=True, slots=True)
class DefaultProject:
    project: Project
    # The secret key in clear text when it was created (or given) by this start, else None.
    new_secret_key: str | None
    # The key given (IDSTITCH_SECRET_KEY) was revoked: it is not accepted.
    given_key_revoked: bool = False


def ensure_default_project(
    conn: Connection, now: datetime, *, ingest_token: str | None = None, secret_key: str | None = None
) -> DefaultProject:
    """The first project, created on first start; given tokens are adopted so tests can name them."""
    conn.execute(conn.dialect.begin_exclusive)
    try:
        row = conn.execute("SELECT * FROM projects ORDER BY id LIMIT 1").fetchone()
        if row is None:
            project = create_project(conn, "Default project", now, ingest_token)
        else:
            project = _project(row)
            if ingest_token and ingest_token != project.ingest_token:
                conn.execute("UPDATE projects SET ingest_token = ? WHERE id = ?", (ingest_token, project.id))
                project = project_by_id(conn, project.id) or project
        shown: str | None = None
        revoked = secret_key is not None and is_revoked(conn, secret_key)
        if secret_key is not None and not revoked:
            add_secret_key(conn, project.id, "from environment", now, secret_key)
            shown = secret_key
        elif conn.execute("SELECT 1 FROM secret_keys WHERE project_id = ?", (project.id,)).fetchone() is None:
            shown = add_secret_key(conn, project.id, "default", now)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return DefaultProject(project, shown, revoked)
