"""Keyed hashes: how suppressions and the audit log name a person without holding its ids.

HMAC-SHA256 with a per-project key (`privacy_keys`, created with the project): it answers "is
this the id I hold?" and nothing else, and the hashes of two projects never match.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from idstitch.errors import NotFound
from idstitch.store.connection import Connection

HASH_PREFIX = "hmac-sha256:"


def privacy_key(conn: Connection, project_id: int) -> bytes:
    row = conn.execute("SELECT hmac_key FROM privacy_keys WHERE project_id = ?", (project_id,)).fetchone()
    if row is None:
        raise NotFound(f"Project {project_id} has no privacy key")
    return bytes.fromhex(row[0])


def keyed_hash(key: bytes, value: str) -> str:
    """HMAC-SHA256 of an id; `surrogatepass` so no string can make hashing fail."""
    return hmac.digest(key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hex()


def hashed_ids(key: bytes, value: Any) -> Any:
    """`value` (an id, or lists of them) with every string replaced by its prefixed keyed hash."""
    if isinstance(value, str):
        return HASH_PREFIX + keyed_hash(key, value)
    if isinstance(value, (list, tuple)):
        return [hashed_ids(key, v) for v in value]
    return value
