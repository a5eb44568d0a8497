"""Settings: one table per level, each row (name, default, help), driving validation and docs.

`PROJECT_SETTINGS` are per project and changed over the API; `SERVER_SETTINGS` are per process
and come from the command line or the environment (Datasette's `SETTINGS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from idstitch.attributes import AttributePolicy, AttributeType
from idstitch.errors import InvalidSetting
from idstitch.id_rules import NO_RULES, IdentityRules, parse_identity_rules
from idstitch.ids import IllegalIds
from idstitch.regexes import check_pattern


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    default: Any
    help: str
    env: str | None = None


PROJECT_SETTINGS: tuple[Setting, ...] = (
    Setting("person_profiles", "always", "`always`: every event has a person; `identified_only`: anonymous events create no person until an identify."),
    Setting("attributes_enabled", True, "Accept attribute operations at all; when false each is refused with `attributes_disabled` at once (events still count). Attributes already stored stay until deleted (POST /api/privacy/delete)."),
    Setting("pii_guard", True, "Emails only under the key `email`, and only for identified persons (a user id, an alias or an import)."),
    Setting("max_user_ids", 1, "User ids one person may hold; null for unlimited."),
    Setting("allow_merge_over_ingest", False, "Accept `$merge_dangerously` with the public ingest token."),
    Setting("identify_without_anonymous_id", "user_id", "What an identify naming no anonymous id does (PostHog `$identify` without `$anon_distinct_id`, from any SDK): `user_id` names the event's distinct id as the person's user id; `plain_event` is PostHog's rule, an ordinary event that applies its attributes and identifies nobody."),
    Setting("illegal_ids", [], "Extra distinct ids that must never be linked (exact values)."),
    Setting("illegal_id_patterns", [], "Extra illegal distinct ids as regular expressions, searched in the id (anchor with ^ and $); the same syntax as `regex` filters."),
    Setting("identity_rules", {}, "Rules per kind of id (identity-rules.md §3, Segment Unify style): `kinds` names your own kinds by a regex, `blocked` lists per kind the values and regexes never to link, `limits` caps the ids of a kind on one person (optionally per `window_days`), and `priority` orders the kinds: a link over a limit drops the id of the lower kind. {} for none."),
    Setting("property_types", {}, "Declared attribute types, e.g. {\"plan\": \"string\"}; a mismatching value is dropped."),
    Setting("max_keys_per_person", 1000, "Attribute keys one person may hold."),
    Setting("max_key_length", 200, "Characters in an attribute key."),
    Setting("max_string_length", 65535, "Characters in a string attribute value."),
    Setting("max_properties_bytes", 512 * 1024, "Bytes of attributes per person (JSON)."),
    Setting("events_retention_days", None, "Days an event is kept, by its time; older ones are deleted from the store and the analytics copy every few minutes (persons, their ids and attributes stay, and undo and split still replay them). Null keeps every event."),
)

SERVER_SETTINGS: tuple[Setting, ...] = (
    Setting("host", "127.0.0.1", "Address to listen on.", "IDSTITCH_HOST"),
    Setting("port", 8000, "Port to listen on.", "IDSTITCH_PORT"),
    Setting("data_dir", "idstitch-data", "Directory holding the SQLite database.", "IDSTITCH_DATA_DIR"),
    Setting("database", None, "PostgreSQL URL (postgresql://user@host/db) to share with other servers, instead of the SQLite file in the data directory.", "IDSTITCH_DATABASE_URL"),
    Setting("ingest_token", None, "Ingest token of the default project (created at first start if unset).", "IDSTITCH_INGEST_TOKEN"),
    Setting("secret_key", None, "A secret key to accept for the default project (for tests and automation).", "IDSTITCH_SECRET_KEY"),
    Setting("max_body_bytes", 20 * 1024 * 1024, "Largest request body accepted, after decompression.", "IDSTITCH_MAX_BODY_BYTES"),
    Setting("max_batch_events", 10_000, "Most events in one request.", "IDSTITCH_MAX_BATCH_EVENTS"),
    Setting("ingest_rate_limit", 50_000, "Events per second one ingest token may send (bursts of 10 s pass; 0: no limit); past it 429 with Retry-After.", "IDSTITCH_INGEST_RATE_LIMIT"),
    Setting("api_rate_limit", 100, "Requests per second one secret key may make to /api (bursts of 10 s pass; 0: no limit); past it 429 with Retry-After.", "IDSTITCH_API_RATE_LIMIT"),
    Setting("query_slots", 4, "Queries (API and UI reads) run at once, each on a read connection of its own; ingestion never waits for them.", "IDSTITCH_QUERY_SLOTS"),
    Setting("header_timeout", 10, "Seconds a connection has to send a request's line and headers, from opening or from its last response, and between two pieces of its body; then it is closed.", "IDSTITCH_HEADER_TIMEOUT"),
    Setting("keep_alive_timeout", 5, "Seconds an idle keep-alive connection stays open after a response.", "IDSTITCH_KEEP_ALIVE_TIMEOUT"),
    Setting("max_connections", 4096, "Connections open at once (at most the open-files limit, less a margin); past it a new one is answered 503 with Retry-After and closed.", "IDSTITCH_MAX_CONNECTIONS"),
    Setting("analytics", "auto", "The analytics engine that answers counts, breakdowns and \"did X N times\" filters from a columnar copy of the events: `duckdb` (a file in the data directory), `clickhouse://user:password@host:port/database` (a ClickHouse server, shared by the servers of a PostgreSQL store), `chdb:/path` (ClickHouse in-process), `off` (the store answers everything), or `auto` (`duckdb` on the SQLite file, `off` on PostgreSQL).", "IDSTITCH_ANALYTICS"),
    Setting("query_queue", 16, "Queries that may wait for a slot; past them a query is answered 503 with Retry-After.", "IDSTITCH_QUERY_QUEUE"),
)

# At most a hundred years, so that now less the days is always a time (a datetime cannot go before year 1).
MAX_RETENTION_DAYS = 36_500

_CHOICES = {
    "person_profiles": ("always", "identified_only"),
    "identify_without_anonymous_id": ("user_id", "plain_event"),
}


@dataclass(frozen=True, slots=True)
class ProjectSettings:
    person_profiles: str = "always"
    attributes_enabled: bool = True
    pii_guard: bool = True
    max_user_ids: int | None = 1
    allow_merge_over_ingest: bool = False
    identify_without_anonymous_id: str = "user_id"
    illegal_ids: tuple[str, ...] = ()
    illegal_id_patterns: tuple[str, ...] = ()
    identity_rules: IdentityRules = NO_RULES
    property_types: Mapping[str, str] = field(default_factory=dict)
    max_keys_per_person: int = 1000
    max_key_length: int = 200
    max_string_length: int = 65535
    max_properties_bytes: int = 512 * 1024
    events_retention_days: int | None = None
    illegal: IllegalIds = field(default=IllegalIds(), compare=False, repr=False)
    attribute_policy: AttributePolicy = field(default=AttributePolicy(), compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {s.name: _jsonable(getattr(self, s.name)) for s in PROJECT_SETTINGS}

    def updated(self, changes: Mapping[str, Any]) -> ProjectSettings:
        """A copy with `changes` applied; raises InvalidSetting naming the bad key and value."""
        merged = self.to_json()
        for name, value in changes.items():
            if name not in merged:
                raise InvalidSetting(f"Unknown setting {name!r}; known settings: {', '.join(merged)}")
            merged[name] = value
        return project_settings_from_json(merged)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, IdentityRules):
        return value.to_json()
    return value


def project_settings_from_json(data: Mapping[str, Any]) -> ProjectSettings:
    values: dict[str, Any] = {}
    for setting in PROJECT_SETTINGS:
        value = data.get(setting.name, setting.default)
        values[setting.name] = _check(setting, value)
    policy = AttributePolicy(
        enabled=values["attributes_enabled"],
        pii_guard=values["pii_guard"],
        max_keys=values["max_keys_per_person"],
        max_key_length=values["max_key_length"],
        max_string_length=values["max_string_length"],
        max_total_bytes=values["max_properties_bytes"],
        declared_types={k: AttributeType(v) for k, v in values["property_types"].items()},
    )
    illegal = IllegalIds.from_settings(list(values["illegal_ids"]), list(values["illegal_id_patterns"]))
    return ProjectSettings(**values, illegal=illegal, attribute_policy=policy)


def _check(setting: Setting, value: Any) -> Any:
    name = setting.name
    default = setting.default

    def bad(expected: str) -> InvalidSetting:
        return InvalidSetting(f"Setting {name!r} has value {value!r}. Expected {expected}.")

    if name in _CHOICES:
        if value not in _CHOICES[name]:
            raise bad("one of " + ", ".join(_CHOICES[name]))
        return value
    if name == "max_user_ids":
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise bad("a whole number of at least 1, or null for unlimited")
        return value
    if name == "events_retention_days":
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_RETENTION_DAYS:
            raise bad(f"a whole number of days from 1 to {MAX_RETENTION_DAYS}, or null to keep events forever")
        return value
    if name == "identity_rules":
        try:
            return parse_identity_rules(value)
        except ValueError as error:  # it names the part of the setting that is wrong
            raise InvalidSetting(f"Setting {error}") from None
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise bad("a whole number of at least 1")
        return value
    if isinstance(default, list):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise bad("a list of strings")
        if name == "illegal_id_patterns":
            for pattern in value:
                problem = check_pattern(pattern)
                if problem:
                    raise InvalidSetting(f"Setting {name!r}: {problem}")
        return tuple(value)
    if isinstance(default, dict):
        types = {t.value for t in AttributeType if t is not AttributeType.NULL}
        if not isinstance(value, Mapping) or not all(isinstance(v, str) and v in types for v in value.values()):
            raise bad("an object mapping attribute keys to one of " + ", ".join(sorted(types)))
        return dict(value)
    raise AssertionError(f"setting {name} has no check")


DEFAULT_PROJECT_SETTINGS = project_settings_from_json({})
assert {f.name for f in fields(ProjectSettings)} >= {s.name for s in PROJECT_SETTINGS}
