"""The tables, as named migrations applied once each in order (sqlite-utils' migrations style).

Events keep the distinct id they arrived with; `distinct_ids` maps each id to its person at read
time, so merges and splits never rewrite events (design.md "Decisions already made").
"""

from __future__ import annotations

MIGRATIONS: tuple[tuple[str, str], ...] = (
    (
        "0001_initial",
        """
        CREATE TABLE projects (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            ingest_token TEXT NOT NULL UNIQUE,
            settings TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL
        );
        CREATE TABLE secret_keys (
            id INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL REFERENCES projects(id),
            label TEXT NOT NULL,
            key_hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            revoked_at TEXT
        );
        CREATE TABLE persons (
            id TEXT PRIMARY KEY,
            project_id INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            is_identified INTEGER NOT NULL DEFAULT 0,
            version INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX persons_by_project ON persons(project_id, created_at);
        CREATE TABLE distinct_ids (
            project_id INTEGER NOT NULL,
            distinct_id TEXT NOT NULL,
            person_id TEXT NOT NULL,
            is_user_id INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            PRIMARY KEY (project_id, distinct_id)
        ) WITHOUT ROWID;
        CREATE INDEX distinct_ids_by_person ON distinct_ids(person_id);
        CREATE TABLE person_attributes (
            person_id TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT,
            type TEXT NOT NULL,
            kind TEXT NOT NULL,
            time TEXT NOT NULL,
            seq INTEGER NOT NULL,
            event_uuid TEXT,
            PRIMARY KEY (person_id, key)
        ) WITHOUT ROWID;
        CREATE TABLE events (
            seq INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL,
            uuid TEXT NOT NULL,
            distinct_id TEXT NOT NULL,
            event TEXT NOT NULL,
            timestamp TEXT NOT NULL,
            received_at TEXT NOT NULL,
            session_id TEXT,
            process_person INTEGER NOT NULL DEFAULT 1,
            properties TEXT NOT NULL,
            ops TEXT
        );
        CREATE UNIQUE INDEX events_by_uuid ON events(project_id, uuid);
        CREATE INDEX events_by_distinct_id ON events(project_id, distinct_id, timestamp);
        CREATE TABLE links (
            id INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL,
            kind TEXT NOT NULL,
            actor TEXT NOT NULL,
            target_distinct_id TEXT,
            source_distinct_id TEXT,
            target_person_id TEXT,
            source_person_id TEXT,
            event_uuid TEXT,
            decision_row TEXT,
            outcome TEXT NOT NULL,
            reason TEXT,
            created_at TEXT NOT NULL
        );
        CREATE INDEX links_by_target ON links(project_id, target_distinct_id);
        CREATE INDEX links_by_source ON links(project_id, source_distinct_id);
        CREATE TRIGGER links_are_append_only BEFORE UPDATE ON links
        BEGIN SELECT RAISE(ABORT, 'the link log is append-only'); END;
        CREATE TABLE warnings (
            id INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL,
            type TEXT NOT NULL,
            event_uuid TEXT,
            distinct_ids TEXT NOT NULL,
            details TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX warnings_by_project ON warnings(project_id, id);
        CREATE TABLE dead_letters (
            id INTEGER PRIMARY KEY,
            project_id INTEGER,
            reason TEXT NOT NULL,
            payload TEXT NOT NULL,
            received_at TEXT NOT NULL
        );
        CREATE TABLE audit_log (
            id INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            details TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE TRIGGER audit_log_is_append_only BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        """,
    ),
)
