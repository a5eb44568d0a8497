"""The read/admin API's request and response shapes, for validation and the OpenAPI document."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Problem(BaseModel):
    path: str = Field(description="The wrong part: `body`, a parameter, a path such as `filter.and[1].op`, or `request` as a whole.")
    reason: str


class ApiError(BaseModel):
    detail: str = Field(description="Every problem as `path: reason`, joined by `; `.")
    errors: list[Problem]


class Person(BaseModel):
    id: str = Field(description="Person id: UUIDv5 of `<project>:<first distinct id>`.")
    distinct_ids: list[str]
    user_ids: list[str] = Field(description="The distinct ids named as this person's identity by identify.")
    properties: dict[str, Any]
    is_identified: bool
    created_at: str
    display_name: str
    avatar_url: str | None


class PersonPage(BaseModel):
    results: list[Person]
    next: str | None = Field(description="Cursor for the next page, or null on the last page.")


class Attribute(BaseModel):
    key: str
    value: Any
    type: Literal["string", "number", "boolean", "datetime", "list", "object", "null"]
    operation: Literal["set", "set_once", "update"] = Field(
        description="set_once, set, or update (add, append, union or remove applied to the previous value)."
    )
    set_at: str = Field(description="Event time of the operation that decided the value.")
    event_uuid: str | None


class Link(BaseModel):
    id: int
    kind: str
    actor: str
    target_distinct_id: str | None
    source_distinct_id: str | None
    target_person_id: str | None
    source_person_id: str | None
    event_uuid: str | None
    decision_row: str | None
    outcome: str = Field(
        description="What the entry does now: created, attached, merged, already_linked, refused:<reason>, split,"
        " imported, undone (an `undo` entry's own outcome too); differs from `logged_outcome` once an undo re-decided it"
    )
    logged_outcome: str = Field(description="The outcome the entry was logged with (the log never changes).")
    decided_by: int | None = Field(description="The undo entry that re-decided this entry's outcome, if any.")
    undoes: int | None = Field(description="For an `undo` entry: the entry it undid (an undo's undo is a redo).")
    created_at: str


class LinkPage(BaseModel):
    results: list[Link]
    next: str | None = Field(description="Cursor for the next page, or null on the last page.")


class StoredEvent(BaseModel):
    uuid: str
    distinct_id: str
    event: str
    timestamp: str
    session_id: str | None
    properties: dict[str, Any]
    operations: dict[str, Any]


class EventPage(BaseModel):
    results: list[StoredEvent]
    next: str | None


class IngestionWarning(BaseModel):
    id: int
    type: str
    event_uuid: str | None
    distinct_ids: list[str]
    details: dict[str, Any]
    created_at: str
    lifted_by: int | None = Field(
        None, description="For a refused link: the undo entry after which the link is no longer refused (it was re-decided)."
    )


class WarningPage(BaseModel):
    results: list[IngestionWarning]
    next: str | None


class DeadLetter(BaseModel):
    id: int
    reason: str
    payload: Any
    received_at: str


class DeadLetterPage(BaseModel):
    results: list[DeadLetter]
    next: str | None


ATTRIBUTES_NOTE = (
    "attributes_enabled=false refuses every new attribute write at once; attributes already stored"
    " stay until deleted (POST /api/privacy/delete)."
)


class ProjectSettingsModel(BaseModel):
    person_profiles: Literal["always", "identified_only"]
    attributes_enabled: bool = Field(
        description="Accept attribute operations. Switching it off refuses new writes at once; stored attributes"
        " stay until deleted (POST /api/privacy/delete)."
    )
    pii_guard: bool
    max_user_ids: int | None
    allow_merge_over_ingest: bool
    identify_without_anonymous_id: Literal["user_id", "plain_event"] = Field(
        description="`user_id`: an identify naming no anonymous id names the event's distinct id as a user id;"
        " `plain_event`: PostHog's rule, an ordinary event that applies its attributes and identifies nobody."
    )
    illegal_ids: list[str]
    illegal_id_patterns: list[str]
    identity_rules: dict[str, Any] = Field(
        description="Rules per kind of id: `kinds` [{name, pattern}], `blocked` {kind: {values, patterns}},"
        " `limits` [{kind, max, window_days?}], `priority` [kind, ...] (identity-rules.md §3)."
    )
    property_types: dict[str, str]
    max_keys_per_person: int
    max_key_length: int
    max_string_length: int
    max_properties_bytes: int
    events_retention_days: int | None = Field(
        description="Days an event is kept, by its time (null: forever); older ones leave the store and the analytics"
        " copy within minutes, while persons, their ids and attributes stay."
    )
    stored_data: str = Field(ATTRIBUTES_NOTE, description="What switching attributes off does to data already stored.")


class MergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target_distinct_id: str = Field(description="The person that survives owns this id.")
    source_distinct_id: str = Field(description="This id's person is merged into the target's.")


class SplitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    distinct_ids: list[str] | None = Field(
        None, description="Ids to give persons of their own, each alone; all when omitted (and no `groups`)."
    )
    groups: list[list[str]] | None = Field(
        None, description="Instead: groups of ids, each group one person; the person's ids in no group stay together as one more."
    )


class MovedId(BaseModel):
    distinct_id: str
    from_person_id: str | None
    to_person_id: str | None


class AttributeChange(BaseModel):
    person_id: str = Field(description="The person after the change.")
    key: str
    before: Any = Field(description="The value on the person that held these ids before (null: not set).")
    after: Any


class IdentifiedChange(BaseModel):
    person_id: str
    is_identified: bool


class LinkChange(BaseModel):
    id: int = Field(description="A link-log entry that an undo re-decided.")
    before: str
    after: str


class NewWarning(BaseModel):
    type: str
    event_uuid: str | None
    distinct_ids: list[str]
    details: dict[str, Any]


class IdentityChange(BaseModel):
    """What an identity action did, or, with `dry_run`, would do (nothing was changed then)."""

    dry_run: bool
    undo_id: int | None = Field(description="The undo entry appended to the link log (an undo only).")
    persons_before: list[Person] = Field(description="The persons holding the ids concerned, before.")
    persons_after: list[Person] = Field(description="The persons holding the same ids, after.")
    created: list[str] = Field(description="Person ids that are new.")
    deleted: list[str] = Field(description="Person ids that are gone (merged away).")
    moved_ids: list[MovedId]
    attribute_changes: list[AttributeChange]
    identified_changes: list[IdentifiedChange]
    links: list[Link] = Field(description="The entries the action appends to the link log.")
    links_changed: list[LinkChange] = Field(description="Earlier entries whose outcome an undo or redo re-decided.")
    warnings: list[NewWarning] = Field(description="The warnings the action raises.")


class IdentifyPreview(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str
    anonymous_id: str | None = None
    set: dict[str, Any] = {}
    set_once: dict[str, Any] = {}


class AliasPreview(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target_distinct_id: str
    source_distinct_id: str


class ImportedPerson(BaseModel):
    model_config = ConfigDict(extra="forbid")
    distinct_ids: list[str] = Field(min_length=1)
    user_ids: list[str] = []
    properties: dict[str, Any] = {}
    is_identified: bool = False
    created_at: str | None = None


class ImportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    persons: list[ImportedPerson] = Field(max_length=10_000)


class ImportWarning(BaseModel):
    type: str
    details: dict[str, Any]


class ImportResult(BaseModel):
    index: int
    person_id: str | None = None
    error: str | None = None
    warnings: list[ImportWarning] = Field([], description="What the import refused or altered (also in /api/warnings).")


class ImportResponse(BaseModel):
    imported: int
    results: list[ImportResult]


class WriterStatus(BaseModel):
    running: bool = Field(description="False once the writer has stopped: restart the server (see `fault`).")
    fault: str | None = Field(description="Why the last write transaction failed as a whole (a full disk), or why the writer stopped; null while writes commit.")


class Status(BaseModel):
    version: str
    store: str = Field(description="The SQLite file, or the PostgreSQL URL without its password.")
    database_bytes: int | None = Field(description="The database on disk.")
    wal_bytes: int | None = Field(description="Its write-ahead log (SQLite's `-wal` file, or PostgreSQL's WAL where this role may list it).")
    durability: dict[str, str] = Field(
        description="The writer connection's durability settings as the database reports them:"
        " SQLite `journal_mode` and `synchronous`, PostgreSQL `fsync` and `synchronous_commit`."
    )
    writer: WriterStatus
    analytics: AnalyticsStatus | None = Field(description="The analytics copy beside the store, if the server keeps one.")


class AnalyticsStatus(BaseModel):
    engine: str = Field(description="`duckdb`.")
    location: str = Field(description="Where the copy is (its file).")
    bytes: int | None = Field(description="The copy on disk.")
    lag: dict[str, Any] = Field(description="How far behind the store the copy was at its last step"
                                " (`caught_up`, `events_behind`, `person_changes_behind`, `event_changes_behind`, `seq`, `store_seq`, `error`).")


class RulePreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    changes: dict[str, Any] = Field(description="Project settings to try, as PATCH /api/project/settings takes them.")
    days: int = Field(30, ge=1, le=3650, description="How far back the link log is replayed.")


class RuleExample(BaseModel):
    before: list[list[str]] = Field(description="The ids of each person under the settings of now.")
    after: list[list[str]] = Field(description="The same ids' persons under the settings tried.")
    links_changed: list[dict[str, Any]] = Field(description="Entries decided otherwise: `id`, `before`, `after`.")
    warnings: list[str] = Field(description="Warning types the settings tried would newly raise.")


class RulePreview(BaseModel):
    since: str
    groups_replayed: int = Field(description="Groups of joined ids that an entry since then named, each replayed twice.")
    truncated: bool = Field(description="More groups existed than one preview replays (500).")
    persons_affected: int = Field(description="Persons (their ids and attributes) that would come out otherwise.")
    examples: list[RuleExample]
