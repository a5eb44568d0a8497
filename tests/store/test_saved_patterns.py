"""Illegal-id patterns saved when they were full-match keep blocking exactly the ids they
blocked, once migrations make every pattern searched (store/schema.py 0005, PostgreSQL's 0003)."""

from __future__ import annotations

import pytest

from idstitch.ids import is_illegal_for_identity
from idstitch.server.app import prepare
from idstitch.settings import ProjectSettings
from idstitch.store.projects import project_by_id, save_settings

pytestmark = pytest.mark.both_stores

OLD = {"sqlite": "0005_illegal_id_patterns_searched", "postgres": "0003_illegal_id_patterns_searched"}


def test_patterns_saved_as_full_match_are_anchored_by_the_migration(config):
    project_id = prepare(config).project.id
    conn = config.store().connect()
    try:
        # What a server of the earlier version saved (a full-match pattern; PATCH checked it then).
        save_settings(conn, project_id, ProjectSettings(illegal_id_patterns=(r"tmp-\d+", "(?i)bot|crawler", "(?i:qa)-.*")))
        # As a database of the earlier version: the migration not applied yet.
        conn.execute("DELETE FROM migrations WHERE name IN (?, ?)", tuple(OLD.values()))
        if conn.in_transaction:
            conn.execute("COMMIT")
    finally:
        conn.close()

    prepare(config)
    conn = config.store().connect(read_only=True)
    try:
        project = project_by_id(conn, project_id)
    finally:
        conn.close()
    assert project is not None
    assert project.settings.illegal_id_patterns == (
        r"\A(?:tmp-\d+)\Z", r"(?i)\A(?:bot|crawler)\Z", r"\A(?:(?i:qa)-.*)\Z"
    )
    blocked = {i for i in ("tmp-42", "tmp-42x", "my-tmp-42", "BOT", "crawler", "webcrawler", "QA-1", "my-qa-1")
               if is_illegal_for_identity(i, project.settings.illegal)}
    assert blocked == {"tmp-42", "BOT", "crawler", "QA-1"}
