"""Identity lookups (Heap's identity API): from any distinct id to its person, user ids and all ids;
from an email address to the persons that have it."""

from __future__ import annotations

from typing import Any

import msgspec

from idstitch.store import reads
from idstitch.store.connection import Connection

_encode = msgspec.json.Encoder().encode


def by_distinct_id(conn: Connection, project_id: int, distinct_id: str) -> dict[str, Any] | None:
    """The person owning `distinct_id`, and whether that id is one of its user ids."""
    row = conn.execute(
        "SELECT person_id, is_user_id FROM distinct_ids WHERE project_id = ? AND distinct_id = ?",
        (project_id, distinct_id),
    ).fetchone()
    if row is None:
        return None
    person = reads.person(conn, project_id, row[0])
    if person is None:
        return None
    return {"distinct_id": distinct_id, "is_user_id": bool(row[1]), "person": person}


def by_email(conn: Connection, project_id: int, email: str) -> list[dict[str, Any]]:
    """Persons whose `email` attribute is `email` (ignoring ASCII case), and the person of a
    distinct id spelled exactly like it (sites often use the email as the user id)."""
    same = conn.dialect.same_text_ignoring_ascii_case("pa.value", _encode(email).decode())
    person_ids = [
        r[0]
        for r in conn.execute(
            "SELECT pa.person_id FROM person_attributes pa JOIN persons p ON p.id = pa.person_id"
            f" WHERE pa.key = 'email' AND {same.text} AND pa.kind != 'unset' AND p.project_id = ?",
            (*same.params, project_id),
        )
    ]
    owner = reads.person_id_for_distinct_id(conn, project_id, email)
    if owner is not None:
        person_ids.append(owner)
    found = [reads.person(conn, project_id, person_id) for person_id in dict.fromkeys(person_ids)]
    return sorted((p for p in found if p is not None), key=lambda p: (p["created_at"], p["id"]))
