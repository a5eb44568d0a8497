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
    (
        # store/privacy.py: erasure, suppression (keyed hashes only) and the email lookup.
        "0003_privacy",
        """
        CREATE TABLE privacy_keys (
            project_id INTEGER PRIMARY KEY REFERENCES projects(id),
            hmac_key TEXT NOT NULL
        );
        INSERT INTO privacy_keys (project_id, hmac_key) SELECT id, lower(hex(randomblob(32))) FROM projects;
        CREATE TRIGGER projects_get_a_privacy_key AFTER INSERT ON projects
        BEGIN INSERT INTO privacy_keys (project_id, hmac_key) VALUES (new.id, lower(hex(randomblob(32)))); END;
        CREATE TABLE suppressions (
            project_id INTEGER NOT NULL,
            id_hash TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (project_id, id_hash)
        ) WITHOUT ROWID;
        CREATE TABLE suppressed_events (
            project_id INTEGER PRIMARY KEY,
            dropped INTEGER NOT NULL,
            last_dropped_at TEXT NOT NULL
        );
        CREATE INDEX person_attributes_by_email ON person_attributes(lower(value)) WHERE key = 'email';
        DROP TRIGGER audit_log_is_append_only;
        CREATE TRIGGER audit_log_is_append_only BEFORE UPDATE ON audit_log
        WHEN new.id IS NOT old.id OR new.project_id IS NOT old.project_id OR new.actor IS NOT old.actor
          OR new.action IS NOT old.action OR new.created_at IS NOT old.created_at
          OR json_extract(new.details, '$.redacted') IS NOT 1
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only (erasure may only redact details)'); END;
        CREATE TRIGGER audit_log_keeps_its_rows BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        """,
    ),
    (
        # query/: sessions kept at ingest (one upsert per batch in SQLitePersons.insert_events),
        # saved segments, and indexes for filters and counts: events by name ("did X", covering the
        # distinct id so only the mapping is looked up), persons
        # newest first without touching the table, attribute values by key (equality filters
        # and breakdowns read only the persons that have the key).
        "0002_sessions_segments",
        """
        CREATE TABLE sessions (
            project_id INTEGER NOT NULL,
            session_id TEXT NOT NULL,
            first_at TEXT NOT NULL,
            last_at TEXT NOT NULL,
            event_count INTEGER NOT NULL,
            identifies INTEGER NOT NULL,
            entry_at TEXT,
            entry_url TEXT,
            distinct_ids TEXT NOT NULL,
            last_distinct_id TEXT NOT NULL,
            PRIMARY KEY (project_id, session_id)
        ) WITHOUT ROWID;
        CREATE INDEX sessions_by_time ON sessions(project_id, first_at);
        WITH ranked AS (
            SELECT project_id, session_id, distinct_id, timestamp, event,
                   json_extract(properties, '$."$current_url"') AS url,
                   row_number() OVER (PARTITION BY project_id, session_id ORDER BY timestamp DESC, seq DESC) AS from_last,
                   row_number() OVER (PARTITION BY project_id, session_id
                                      ORDER BY json_extract(properties, '$."$current_url"') IS NULL, timestamp, seq) AS from_entry
            FROM events WHERE session_id IS NOT NULL
        )
        INSERT INTO sessions (project_id, session_id, first_at, last_at, event_count, identifies, entry_at,
                              entry_url, distinct_ids, last_distinct_id)
        SELECT project_id, session_id, min(timestamp), max(timestamp), count(*), sum(event = '$identify'),
               max(CASE WHEN from_entry = 1 AND url IS NOT NULL THEN timestamp END),
               max(CASE WHEN from_entry = 1 THEN url END),
               json_group_array(DISTINCT distinct_id),
               max(CASE WHEN from_last = 1 THEN distinct_id END)
        FROM ranked GROUP BY project_id, session_id;
        CREATE TABLE segments (
            id INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL,
            name TEXT NOT NULL,
            description TEXT NOT NULL,
            filter TEXT NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (project_id, name)
        );
        CREATE INDEX events_by_name ON events(project_id, event, timestamp, distinct_id);
        CREATE INDEX persons_newest ON persons(project_id, created_at, id, is_identified);
        CREATE INDEX person_attributes_by_key ON person_attributes(key, value);
        """,
    ),
    (
        # store/signins.py: the web UI's sign-ins. Files of earlier versions made the table at
        # the first sign-in, with this same statement; IF NOT EXISTS keeps those.
        "0004_signins",
        """
        CREATE TABLE IF NOT EXISTS ui_signins (
            token_hash TEXT PRIMARY KEY,
            project_id INTEGER NOT NULL,
            key_id INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL
        ) WITHOUT ROWID;
        """,
    ),
    (
        # Illegal-id patterns were full-match before regexes.py made every pattern searched:
        # anchor the saved ones, so each still blocks exactly the ids it blocked (after a
        # leading flags group such as `(?i)`, which Python wants first).
        "0005_illegal_id_patterns_searched",
        """
        UPDATE projects SET settings = json_set(settings, '$.illegal_id_patterns', json((
            SELECT json_group_array(CASE
                WHEN p.value LIKE '(?%' AND instr(p.value, ')') > 3
                     AND trim(substr(p.value, 3, instr(p.value, ')') - 3), 'aiLmsux') = ''
                THEN substr(p.value, 1, instr(p.value, ')')) || '\\A(?:' || substr(p.value, instr(p.value, ')') + 1) || ')\\Z'
                ELSE '\\A(?:' || p.value || ')\\Z' END)
            FROM json_each(projects.settings, '$.illegal_id_patterns') p
        )))
        WHERE json_type(settings, '$.illegal_id_patterns') = 'array' AND json_array_length(settings, '$.illegal_id_patterns') > 0;
        """,
    ),
    (
        # history.py: every link entry gets its place in the project's history (the seq of its
        # event, or one taken for it) and what a replay needs beyond its ids; `link_effects`
        # holds the outcome an undo or redo re-decided for an entry, the log itself never
        # changing. Entries logged before have the seq of their event, or of the nearest
        # earlier entry that had one.
        "0006_undoable_links",
        """
        ALTER TABLE links ADD COLUMN seq INTEGER;
        ALTER TABLE links ADD COLUMN detail TEXT;
        DROP TRIGGER links_are_append_only;
        UPDATE links SET seq = (SELECT e.seq FROM events e WHERE e.project_id = links.project_id AND e.uuid = links.event_uuid);
        UPDATE links SET seq = coalesce((
            SELECT l2.seq FROM links l2 WHERE l2.project_id = links.project_id AND l2.id < links.id AND l2.seq IS NOT NULL
            ORDER BY l2.id DESC LIMIT 1), 0) WHERE seq IS NULL;
        CREATE TRIGGER links_are_append_only BEFORE UPDATE ON links
        BEGIN SELECT RAISE(ABORT, 'the link log is append-only'); END;
        CREATE TABLE link_effects (
            link_id INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL,
            outcome TEXT NOT NULL,
            reason TEXT,
            decided_by INTEGER NOT NULL
        );
        CREATE INDEX link_effects_by_project ON link_effects(project_id);
        CREATE INDEX links_by_seq ON links(seq);
        """,
    ),
    (
        # The analytics engine's feed (analytics/feeder.py) beside the event sequence: which
        # persons changed (their row, ids or attributes; one row per person, its last change)
        # and which stored events were deleted or rewritten (an erasure), each numbered in
        # commit order. An erasure names no person here: it leaves a mark, and the copy drops
        # the persons the store no longer has.
        "0007_analytics_feed",
        """
        CREATE TABLE person_changes (
            project_id INTEGER NOT NULL,
            person_id TEXT NOT NULL,
            change INTEGER NOT NULL,
            PRIMARY KEY (project_id, person_id)
        ) WITHOUT ROWID;
        CREATE INDEX person_changes_by_change ON person_changes(change);
        -- seq NULL: persons of the project were erased (the copy drops every person the store no longer has).
        CREATE TABLE event_changes (
            change INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL,
            seq INTEGER
        );
        -- Which store a copy was made from: a copy of another one (a file restored or replaced) starts over.
        CREATE TABLE store_identity (id TEXT NOT NULL);
        INSERT INTO store_identity (id) VALUES (lower(hex(randomblob(16))));
        """,
    ),
    (
        # store/retention.py: what an event past its project's `events_retention_days` leaves
        # behind when undo or split may still need it (its attribute operations, the properties
        # that set automatic attributes, a link-log entry naming it, or that it is the earliest
        # sign of its id): no other properties, no session. Only replays read it (store/persons.py
        # `replay_events`), and erasures delete it; counts, lists and the analytics copy never see it.
        "0008_retired_events",
        """
        CREATE TABLE retired_events (
            seq INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL,
            uuid TEXT NOT NULL,
            distinct_id TEXT NOT NULL,
            event TEXT NOT NULL,
            timestamp TEXT NOT NULL,
            process_person INTEGER NOT NULL,
            ops TEXT,
            lifted TEXT
        );
        CREATE UNIQUE INDEX retired_events_by_uuid ON retired_events(project_id, uuid);
        CREATE INDEX retired_events_by_distinct_id ON retired_events(project_id, distinct_id, seq);
        """,
    ),
    (
        # The seqs of erased events stay taken (sqlite.py `max_seq` reads the greatest here): the
        # analytics copy has read past them, and an event stored again under one of them would
        # never reach it.
        "0009_erased_seqs_stay_taken",
        """
        CREATE INDEX event_changes_by_seq ON event_changes(seq);
        """,
    ),
    (
        # So are the feed's person change numbers (dialects.py `LAST_PERSON_CHANGE`): an erasure
        # drops the erased persons' journal rows, and its mark keeps their greatest number.
        "0010_erased_changes_stay_taken",
        """
        ALTER TABLE event_changes ADD COLUMN person_change INTEGER;
        CREATE INDEX event_changes_by_person_change ON event_changes(person_change);
        """,
    ),
)
