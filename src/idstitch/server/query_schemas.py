"""Request and response shapes of the query API (sessions, filtered lists, counts, segments,
identity lookups, server-side attribute updates), for validation and the OpenAPI document."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from idstitch.query.filters import Filter, check_key
from idstitch.server.schemas import Person

_FILTER_HELP = (
    "A filter document: {\"attribute\"|\"property\": key, \"op\": ..., \"value\": ...}, {\"did\": event, "
    "\"min_count\", \"after\", \"before\", \"where\"}, {\"segment\": id}, or {\"and\"|\"or\": [...]}, {\"not\": ...}."
)
_TIME_HELP = "ISO-8601 (2026-11-01, 2026-11-01T10:00:00Z) or relative to now (-7d, 7 days ago, last 24 hours, today)."


class PersonSummary(BaseModel):
    id: str
    display_name: str = Field(description="highlightDisplayName, name, email, a user id, else `User <n>`.")
    avatar_url: str | None
    is_identified: bool
    user_ids: list[str]


class Session(BaseModel):
    session_id: str
    person: PersonSummary | None = Field(description="The person owning the distinct id of the session's latest event.")
    distinct_ids: list[str]
    started_at: str
    ended_at: str
    duration_seconds: float
    event_count: int
    entry_url: str | None = Field(description="`$current_url` of the earliest event that has one.")
    identified: bool = Field(description="An identify happened in this session.")
    inferred: bool = Field(
        description="Not identified, but its device's anonymous id was joined to its person by a later identify"
        " in another session (Highlight's indicator)."
    )


class SessionPage(BaseModel):
    results: list[Session]
    next: str | None = Field(description="Cursor for the next page, or null on the last page.")


class QueriedEvent(BaseModel):
    uuid: str
    distinct_id: str
    event: str
    timestamp: str
    session_id: str | None
    properties: dict[str, Any]
    operations: dict[str, Any]
    person: PersonSummary | None = Field(description="The person owning the event's distinct id now.")


class QueriedEventPage(BaseModel):
    results: list[QueriedEvent]
    next: str | None


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid")
    filter: Filter | None = Field(None, description=_FILTER_HELP)
    segment_id: int | None = Field(None, ge=1, le=2**63 - 1, description="Also apply this saved segment.")
    limit: int = Field(100, ge=1, le=1000)
    cursor: str | None = None


class PersonQuery(_Query):
    pass


class PersonPage(BaseModel):
    results: list[Person]
    next: str | None


class SessionQuery(_Query):
    person_id: str | None = Field(None, description="Only sessions in which one of this person's ids took part.")
    distinct_id: str | None = Field(None, description="Only sessions in which this id took part.")
    after: str | None = Field(None, description="Sessions that started at or after this time. " + _TIME_HELP)
    before: str | None = Field(None, description="Sessions that started before this time. " + _TIME_HELP)
    identified: bool | None = None
    inferred: bool | None = None


class EventQuery(_Query):
    events: list[str] | None = Field(None, max_length=100, description="Only events with these names.")
    person_id: str | None = None
    distinct_id: str | None = None
    session_id: str | None = None
    after: str | None = Field(None, description="At or after this time. " + _TIME_HELP)
    before: str | None = Field(None, description="Before this time. " + _TIME_HELP)


class Breakdown(BaseModel):
    model_config = ConfigDict(extra="forbid")
    attribute: str | None = Field(None, min_length=1, max_length=200, description="A person attribute (its value now).")
    property: str | None = Field(None, min_length=1, max_length=200, description="An event property (its value on each event).")

    @model_validator(mode="after")
    def _exactly_one(self) -> Breakdown:
        if (self.attribute is None) == (self.property is None):
            raise ValueError("give exactly one of `attribute` or `property`")
        if self.property is not None:
            check_key("property", self.property)
        return self


class CountQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    measure: Literal["events", "persons", "new_persons"] = Field(
        "persons",
        description="events: matching events; persons: unique persons with a matching event;"
        " new_persons: persons created in the period.",
    )
    events: list[str] = Field([], max_length=100, description="Only events with these names (all events when empty).")
    interval: Literal["day", "week", "month", "total"] | None = Field(
        "day", description="Periods in UTC; `total` (or null) for totals only, as the UI's \"in total\"."
    )
    after: str | None = Field(None, description="From this time (inclusive). " + _TIME_HELP)
    before: str | None = Field(None, description="Until this time (exclusive). " + _TIME_HELP)
    breakdown: Breakdown | None = None
    breakdown_limit: int = Field(25, ge=1, le=1000, description="Keep the breakdown values with the largest totals.")
    filter: Filter | None = Field(None, description=_FILTER_HELP)
    segment_id: int | None = Field(None, ge=1, le=2**63 - 1)

    def periods(self) -> Literal["day", "week", "month"] | None:
        """The interval the counts are cut by: None for `total`."""
        return None if self.interval == "total" else self.interval


class CountSeries(BaseModel):
    breakdown: Any = Field(description="The breakdown value (null: not set, or no breakdown).")
    counts: list[int] = Field(description="One count per period.")
    total: int


class AnalyticsLag(BaseModel):
    caught_up: bool
    events_behind: int = Field(description="Events of the store not yet in the analytics copy.")
    person_changes_behind: int = Field(description="Persons changed in the store since the copy read them.")
    event_changes_behind: int = Field(description="Events erased or rewritten in the store, not yet in the copy.")
    seq: int = Field(description="The last event sequence number the copy holds.")
    store_seq: int = Field(description="The store's last event sequence number, as of the copy's last look.")
    error: str | None = Field(description="Why the copy cannot be fed or read now, if it cannot.")


class AnsweredBy(BaseModel):
    engine: str = Field(description="`duckdb` or `clickhouse` (the analytics copy), or `store` (the store itself).")
    analytics: AnalyticsLag | None = Field(description="The analytics copy's lag, if the server has one.")


class CountResult(BaseModel):
    measure: str
    interval: str | None
    periods: list[str] = Field(description="Start date of each period (Mondays for weeks).")
    series: list[CountSeries]
    total: int = Field(description="Over the whole range (unique persons are counted once).")
    truncated: bool = Field(description="More breakdown values existed than `breakdown_limit`.")
    answered_by: AnsweredBy = Field(description="Which engine answered: the analytics copy when it has caught up with the store.")


class SegmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=2000)
    filter: Filter = Field(description=_FILTER_HELP)


class Segment(BaseModel):
    id: int
    name: str
    description: str
    filter: dict[str, Any]
    created_at: str


class SegmentPage(BaseModel):
    results: list[Segment]
    next: str | None = Field(description="Cursor for the next page, or null on the last page.")


class IdentityLookup(BaseModel):
    distinct_id: str | None = Field(None, description="The id that was looked up, if any.")
    is_user_id: bool | None = Field(None, description="Whether that id is one of the person's user ids.")
    email: str | None = None
    persons: list[Person] = Field(description="Each with its user ids and all its distinct ids.")


class AttributeUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    distinct_id: str = Field(min_length=1, max_length=200, description="Any distinct id of a known person.")
    set: dict[str, Any] | None = None
    set_once: dict[str, Any] | None = None
    unset: list[str] | None = None
    add: dict[str, Any] | None = None
    append: dict[str, Any] | None = None
    union: dict[str, Any] | None = None
    remove: dict[str, Any] | None = None
    timestamp: str | None = Field(None, description="When the change happened (ISO-8601); now when omitted.")


class AppliedWarning(BaseModel):
    type: str
    details: dict[str, Any]


class AttributeUpdateResult(BaseModel):
    person: Person
    event_uuid: str = Field(description="The `$set` event that carries the operations (split re-derives from it).")
    warnings: list[AppliedWarning]
