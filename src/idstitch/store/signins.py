"""Sign-ins of the web UI: who holds a browser session, and for how long.

Called "sign-ins" so they are never confused with analytics sessions (identity-rules.md §6).
The browser's cookie holds a random token of 32 bytes; this table keeps only its SHA-256 (as
`secret_keys` keeps only key hashes: a leaked database file signs nobody in), the secret key that
signed in, and an absolute expiry. Revoking that key ends its sign-ins at the next request.

The table `ui_signins` is made by the migrations of both stores (SQLite: `0004_signins`).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from idstitch.clock import format_time
from idstitch.store.connection import Connection
from idstitch.store.projects import SecretKey

LIFETIME = timedelta(hours=12)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_signin(conn: Connection, key: SecretKey, now: datetime, lifetime: timedelta = LIFETIME) -> str:
    """Store a new sign-in for `key` (inside a write transaction) and return its token."""
    conn.execute("DELETE FROM ui_signins WHERE expires_at <= ?", (format_time(now),))
    token = secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO ui_signins (token_hash, project_id, key_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
        (_hash(token), key.project_id, key.id, format_time(now), format_time(now + lifetime)),
    )
    return token


def key_for_signin(conn: Connection, token: str, now: datetime) -> SecretKey | None:
    """The secret key behind a live sign-in, or None (unknown, expired, or its key revoked)."""
    row = conn.execute(
        "SELECT k.id, k.project_id, k.label FROM ui_signins s JOIN secret_keys k ON k.id = s.key_id"
        " WHERE s.token_hash = ? AND s.expires_at > ? AND k.revoked_at IS NULL",
        (_hash(token), format_time(now)),
    ).fetchone()
    return SecretKey(row[0], row[1], row[2]) if row else None


def delete_signin(conn: Connection, token: str) -> None:
    """End a sign-in (inside a write transaction); unknown tokens are ignored."""
    conn.execute("DELETE FROM ui_signins WHERE token_hash = ?", (_hash(token),))
