"""The query API (secret key): sessions, filtered persons and events, counts, saved segments,
identity lookups, and attribute updates without an event.

Bad input of any kind (a filter, a parameter, a time) gets a 400 whose body names each problem:
`{"detail": "filter.and[1].op: ...", "errors": [{"path": "filter.and[1].op", "reason": "..."}]}`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response

from idstitch.commands import Track
from idstitch.engine import Batch, CommandResult
from idstitch.errors import IdstitchError, NotFound
from idstitch.ingest import native
from idstitch.ingest.pipeline import WriteContext
from idstitch.outcomes import Rejection
from idstitch.query import counts, events, lookups, people, segments, sessions
from idstitch.query.compiler import EVENTS, PERSONS, SESSIONS, Compiler, run_guarded, where_clause
from idstitch.query.filters import FilterError, FilterNode, parse_filter
from idstitch.query.moments import parse_moment
from idstitch.server import query_schemas as schemas
from idstitch.server.analytics_reads import answer_on_copy
from idstitch.server.api_requests import API_ERRORS, ApiRoute, json_parameter
from idstitch.server.api_routes import Key
from idstitch.server.http_errors import http_error
from idstitch.server.schemas import Person
from idstitch.server.state import AppState
from idstitch.store import reads
from idstitch.store.connection import Connection
from idstitch.store.projects import SecretKey

T = TypeVar("T")
# The largest integer both databases store: a larger id reaching the driver overflowed (a 500).
MAX_SEGMENT_ID = 2**63 - 1


router = APIRouter(prefix="/api", tags=["query"], route_class=ApiRoute, responses=API_ERRORS)


def _state(request: Request) -> AppState:
    return request.app.state.idstitch


async def _query(request: Request, key: SecretKey, fn: Callable[[Connection, Compiler], T]) -> T:
    """Run `fn` in a query slot (server/query_slots.py), with a compiler and a regex time budget."""
    state = _state(request)
    now = state.now()
    try:
        return await state.slots.run(lambda conn: run_guarded(conn, key.project_id, now, fn))
    except FilterError:
        raise
    except IdstitchError as error:
        raise http_error(error) from None


async def _write(request: Request, fn: Callable[[WriteContext], T]) -> T:
    try:
        return await _state(request).writer.write(fn)
    except FilterError:
        raise
    except IdstitchError as error:
        raise http_error(error) from None


def _moment(text: str | None, path: str, now: datetime) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_moment(text, now)
    except ValueError as error:
        raise FilterError([(path, str(error))]) from None


def _page(page: reads.Page) -> dict[str, Any]:
    return {"results": page.results, "next": page.next_cursor}


# -- persons ------------------------------------------------------------------------------------


async def _persons(request: Request, key: SecretKey, query: schemas.PersonQuery) -> dict[str, Any]:
    def run(conn: Connection, compiler: Compiler) -> reads.Page:
        where = where_clause(compiler, PERSONS, query.filter, query.segment_id)
        if not compiler.reads_events:
            return people.persons_page(conn, key.project_id, where, query.limit, query.cursor)
        # "Did X N times" reads events: the analytics copy finds the persons, the store reads them.
        found, _ = answer_on_copy(_state(request).analytics, conn, key.project_id, compiler.now, lambda on, c: people.persons_page(
            on, key.project_id, where_clause(c, PERSONS, query.filter, query.segment_id), query.limit, query.cursor, details=conn,
        ))
        return found

    return _page(await _query(request, key, run))


def _person_owning(conn: Connection, project_id: int, distinct_id: str) -> dict[str, Any] | None:
    person_id = reads.person_id_for_distinct_id(conn, project_id, distinct_id)
    return reads.person(conn, project_id, person_id) if person_id else None


def _filter_parameter(text: str | None) -> FilterNode | None:
    return parse_filter(json_parameter(text, "filter")) if text is not None else None


_FILTER_PARAMETER = "A filter document as JSON text (see POST /api/persons/query)."


@router.get("/persons", response_model=Person | schemas.PersonPage)
async def persons(
    request: Request,
    key: Key,
    distinct_id: Annotated[str | None, Query(description="Return the one person owning this id.")] = None,
    filter: Annotated[str | None, Query(description=_FILTER_PARAMETER)] = None,
    segment_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> Any:
    """The person owning `distinct_id` (404 if none), or without it a page of the persons the
    filter (and saved segment) keeps, newest first."""
    if distinct_id is not None:
        given = [name for name, value in (("filter", filter), ("segment_id", segment_id), ("cursor", cursor)) if value is not None]
        if given:
            raise FilterError([(name, "not used with `distinct_id`, which names one person") for name in given])
        found = await _query(request, key, lambda conn, _: _person_owning(conn, key.project_id, distinct_id))
        if found is None:
            raise HTTPException(404, f"No person owns distinct id {distinct_id!r}")
        return found
    query = schemas.PersonQuery.model_construct(filter=_filter_parameter(filter), segment_id=segment_id, limit=limit, cursor=cursor)
    return await _persons(request, key, query)


@router.post("/persons/query", response_model=schemas.PersonPage)
async def query_persons(request: Request, key: Key, body: schemas.PersonQuery) -> Any:
    """Persons the filter (and saved segment) keeps, newest first, paged."""
    return await _persons(request, key, body)


@router.get("/identity", response_model=schemas.IdentityLookup)
async def identity(
    request: Request,
    key: Key,
    distinct_id: Annotated[str | None, Query(description="Any distinct id: anonymous, device or user id.")] = None,
    email: Annotated[str | None, Query(description="An email address (matched ignoring ASCII case).")] = None,
) -> Any:
    """Heap's identity lookup: from a distinct id to its person, user ids and all ids (404 if no
    person owns it), or from an email to every person that has it."""
    if (distinct_id is None) == (email is None):
        raise FilterError([("distinct_id", "give exactly one of `distinct_id` or `email`")])
    if distinct_id is not None:
        found = await _query(request, key, lambda conn, _: lookups.by_distinct_id(conn, key.project_id, distinct_id))
        if found is None:
            raise HTTPException(404, f"No person owns distinct id {distinct_id!r}")
        return {"distinct_id": distinct_id, "is_user_id": found["is_user_id"], "persons": [found["person"]]}
    assert email is not None
    persons = await _query(request, key, lambda conn, _: lookups.by_email(conn, key.project_id, email))
    return {"email": email, "persons": persons}


@router.post("/persons/attributes", response_model=schemas.AttributeUpdateResult)
async def update_attributes(request: Request, key: Key, body: schemas.AttributeUpdate) -> Any:
    """Change a known person's attributes without an event of theirs (Heap's `add_user_properties`).

    The operations travel as a `$set` event through the writer and the engine, exactly like
    `POST /ingest/attributes`: the same order (set_once, set, unset, add, append, union, remove),
    the same time rules, limits, PII rules and warnings. 404 if no person owns the id."""
    state = _state(request)
    project = state.project(key.project_id)
    message = {"type": "attributes", **body.model_dump(exclude_none=True)}
    if not set(message) & {"set", "set_once", "unset", "add", "append", "union", "remove"}:
        raise FilterError([("body", "give at least one of set, set_once, unset, add, append, union, remove")])
    command = native.message_command(message, None, state.now())
    if isinstance(command, Rejection):
        raise FilterError([("body", command.reason)])
    assert isinstance(command, Track), f"an attributes message decodes to a Track, not {command!r}"
    event = command.event

    def apply(context: WriteContext) -> CommandResult:
        store = context.persons(project.id)
        if not store.owners_of([body.distinct_id]):
            raise NotFound(f"No person owns distinct id {body.distinct_id!r}")
        batch = Batch(store, project.id, project.settings, context.now)
        result = batch.apply(command)
        batch.flush()
        store.audit(
            f"admin:{key.id}", "set_attributes",
            {"event_uuid": event.uuid, "keys": sorted(event.ops.keys())}, ids={"distinct_id": body.distinct_id},
        )
        return result

    result = await _write(request, apply)

    found = await _query(request, key, lambda conn, _: _person_owning(conn, key.project_id, body.distinct_id))
    if found is None:  # pragma: no cover - the write above just saw it
        raise HTTPException(404, f"No person owns distinct id {body.distinct_id!r}")
    return {
        "person": found,
        "event_uuid": event.uuid,
        "warnings": [{"type": w.type.value, "details": w.details} for w in result.warnings],
    }


# -- sessions -----------------------------------------------------------------------------------


async def _sessions(request: Request, key: SecretKey, query: schemas.SessionQuery) -> dict[str, Any]:
    now = _state(request).now()
    after, before = _moment(query.after, "after", now), _moment(query.before, "before", now)

    def run(conn: Connection, compiler: Compiler) -> reads.Page:
        where = where_clause(compiler, SESSIONS, query.filter, query.segment_id)
        return sessions.sessions_page(
            conn, key.project_id, where, person_id=query.person_id, distinct_id=query.distinct_id,
            after=after, before=before, identified=query.identified, inferred=query.inferred,
            limit=query.limit, cursor=query.cursor,
        )

    return _page(await _query(request, key, run))


@router.get("/sessions", response_model=schemas.SessionPage)
async def list_sessions(
    request: Request,
    key: Key,
    person_id: str | None = None,
    distinct_id: str | None = None,
    after: Annotated[str | None, Query(description="Started at or after. ISO-8601 or relative (-7d).")] = None,
    before: Annotated[str | None, Query(description="Started before. ISO-8601 or relative.")] = None,
    identified: bool | None = None,
    inferred: bool | None = None,
    segment_id: Annotated[int | None, Query(ge=1, le=MAX_SEGMENT_ID)] = None,
    filter: Annotated[str | None, Query(description="A filter document as JSON text (see POST /api/sessions/query).")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> Any:
    """Sessions, newest first: person (with display name and avatar), distinct ids, first and last
    time, event count, entry URL, and the `identified` / `inferred` flags."""
    query = schemas.SessionQuery.model_construct(
        filter=_filter_parameter(filter), segment_id=segment_id, limit=limit, cursor=cursor, person_id=person_id,
        distinct_id=distinct_id, after=after, before=before, identified=identified, inferred=inferred,
    )
    return await _sessions(request, key, query)


@router.post("/sessions/query", response_model=schemas.SessionPage)
async def query_sessions(request: Request, key: Key, body: schemas.SessionQuery) -> Any:
    """Sessions with a filter document: `attribute` and `did` apply to the session's person,
    `property` to any event of the session."""
    return await _sessions(request, key, body)


@router.get("/persons/{person_id}/sessions", response_model=schemas.SessionPage)
async def person_sessions(
    request: Request,
    key: Key,
    person_id: str,
    identified: bool | None = None,
    inferred: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> Any:
    """The sessions any of the person's ids took part in, newest first; `inferred=true` answers
    "which anonymous sessions became this customer"."""
    found = await _query(request, key, lambda conn, _: reads.person(conn, key.project_id, person_id))
    if found is None:
        raise HTTPException(404, f"No person with id {person_id!r}")
    query = schemas.SessionQuery(person_id=person_id, identified=identified, inferred=inferred, limit=limit, cursor=cursor)
    return await _sessions(request, key, query)


# -- events and counts --------------------------------------------------------------------------


@router.post("/events/query", response_model=schemas.QueriedEventPage)
async def query_events(request: Request, key: Key, body: schemas.EventQuery) -> Any:
    """Events the filter keeps, newest first, each with its person (resolved now)."""
    now = _state(request).now()
    after, before = _moment(body.after, "after", now), _moment(body.before, "before", now)

    def run(conn: Connection, compiler: Compiler) -> reads.Page:
        where = where_clause(compiler, EVENTS, body.filter, body.segment_id)
        return events.events_page(
            conn, key.project_id, where, names=body.events, person_id=body.person_id, distinct_id=body.distinct_id,
            session_id=body.session_id, after=after, before=before, limit=body.limit, cursor=body.cursor,
        )

    return _page(await _query(request, key, run))


@router.post("/counts", response_model=schemas.CountResult)
async def count(request: Request, key: Key, body: schemas.CountQuery) -> Any:
    """Events, unique persons or new persons per day, week or month, optionally broken down by a
    person attribute or an event property (e.g. sign-ups per `plan`)."""
    now = _state(request).now()
    spec = counts.CountSpec(
        measure=body.measure,
        events=tuple(body.events),
        interval=body.periods(),
        after=_moment(body.after, "after", now),
        before=_moment(body.before, "before", now),
        breakdown_attribute=body.breakdown.attribute if body.breakdown else None,
        breakdown_property=body.breakdown.property if body.breakdown else None,
        breakdown_limit=body.breakdown_limit,
    )
    target = PERSONS if body.measure == "new_persons" else EVENTS

    def on_either(conn: Connection, compiler: Compiler) -> dict[str, Any]:
        return counts.count(conn, key.project_id, spec, where_clause(compiler, target, body.filter, body.segment_id), now)

    def run(conn: Connection, compiler: Compiler) -> dict[str, Any]:
        result, answered_by = answer_on_copy(_state(request).analytics, conn, key.project_id, now, on_either)
        return {**result, "answered_by": answered_by}

    return await _query(request, key, run)


# -- segments -----------------------------------------------------------------------------------


@router.get("/segments", response_model=schemas.SegmentPage)
async def list_segments(
    request: Request, key: Key, limit: Annotated[int, Query(ge=1, le=1000)] = 100, cursor: str | None = None
) -> Any:
    """The project's saved segments, by name, paged."""
    return _page(await _query(request, key, lambda conn, _: segments.segments_page(conn, key.project_id, limit, cursor)))


@router.post("/segments", response_model=schemas.Segment, status_code=201)
async def create_segment(request: Request, key: Key, body: schemas.SegmentIn) -> Any:
    """Save a named filter; use it as `segment_id` in any query or `{"segment": id}` in a filter."""
    state = _state(request)

    def store(context: WriteContext) -> dict[str, Any]:
        created = segments.create_segment(context.conn, key.project_id, body.name, body.description, body.filter, state.now())
        context.persons(key.project_id).audit(f"admin:{key.id}", "create_segment", {"id": created["id"], "name": body.name})
        return created

    return await _write(request, store)


# At most SQLite's largest integer: a bigger id cannot be bound (it was a 500).
SegmentId = Annotated[int, Path(ge=1, le=MAX_SEGMENT_ID)]


@router.get("/segments/{segment_id}", response_model=schemas.Segment)
async def get_segment(request: Request, key: Key, segment_id: SegmentId) -> Any:
    found = await _query(request, key, lambda conn, _: segments.get_segment(conn, key.project_id, segment_id))
    if found is None:
        raise HTTPException(404, f"No segment with id {segment_id}")
    return found


@router.delete("/segments/{segment_id}", status_code=204)
async def delete_segment(request: Request, key: Key, segment_id: SegmentId) -> Response:
    """Delete a saved segment (409 while another segment uses it)."""

    def remove(context: WriteContext) -> None:
        removed = segments.delete_segment(context.conn, key.project_id, segment_id)
        context.persons(key.project_id).audit(f"admin:{key.id}", "delete_segment", {"id": segment_id, "name": removed["name"]})

    await _write(request, remove)
    return Response(status_code=204)
