"""The read/admin API: everything here needs a secret key (`Authorization: Bearer <key>`).

Reads run on read-only connections in the thread pool; writes (merge, split, import, settings)
go through the one writer, so they are ordered with ingestion.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

import idstitch
from idstitch.clock import parse_time
from idstitch.commands import Actor, ImportPerson
from idstitch.errors import IdstitchError
from idstitch.ingest.pipeline import WriteContext, apply_imports
from idstitch.server import schemas
from idstitch.server.api_requests import API_ERRORS, ApiRoute
from idstitch.server.http_errors import http_error
from idstitch.server.state import AppState
from idstitch.store import reads
from idstitch.store.connection import Connection
from idstitch.store.projects import SecretKey, save_settings

T = TypeVar("T")

_bearer = HTTPBearer(auto_error=False, description="A secret key of the project (`sk_...`).")


def _state(request: Request) -> AppState:
    return request.app.state.idstitch


def secret_key(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> SecretKey:
    """The caller's secret key; an ingest token or a revoked key gets 401."""
    if credentials is None:
        raise HTTPException(401, "Send a secret key as `Authorization: Bearer <key>`")
    key = _state(request).key_for_secret(credentials.credentials)
    if key is None:
        raise HTTPException(401, "Not a valid secret key (ingest tokens cannot read)")
    return key


Key = Annotated[SecretKey, Depends(secret_key)]
router = APIRouter(prefix="/api", tags=["api"], route_class=ApiRoute, responses=API_ERRORS)


async def _read(request: Request, fn: Callable[[Connection], T]) -> T:
    try:
        return await _state(request).slots.run(fn)
    except IdstitchError as error:
        raise http_error(error) from None


def _actor(key: SecretKey) -> Actor:
    return Actor("admin", key.id)


async def _write(state: AppState, fn: Callable[[WriteContext], T]) -> T:
    try:
        return await state.writer.write(fn)
    except IdstitchError as error:
        raise http_error(error) from None


async def _person_or_404(request: Request, key: SecretKey, person_id: str) -> dict[str, Any]:
    found = await _read(request, lambda conn: reads.person(conn, key.project_id, person_id))
    if found is None:
        raise HTTPException(404, f"No person with id {person_id!r}")
    return found


@router.get("/persons/{person_id}", response_model=schemas.Person)
async def person(request: Request, key: Key, person_id: str) -> Any:
    """One person with all its distinct ids and properties."""
    return await _person_or_404(request, key, person_id)


@router.get("/persons/{person_id}/attributes", response_model=list[schemas.Attribute])
async def person_attributes(request: Request, key: Key, person_id: str) -> Any:
    """Each attribute with its type, the time it was set and the event that set it."""
    await _person_or_404(request, key, person_id)
    return await _read(request, lambda conn: reads.attributes(conn, person_id))


@router.get("/persons/{person_id}/links", response_model=schemas.LinkPage)
async def person_links(
    request: Request,
    key: Key,
    person_id: str,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> Any:
    """The identity log entries about this person's ids, refusals included, oldest first."""
    await _person_or_404(request, key, person_id)
    page = await _read(request, lambda conn: reads.links_page(conn, key.project_id, person_id, limit, cursor))
    return {"results": page.results, "next": page.next_cursor}


@router.get("/persons/{person_id}/events", response_model=schemas.EventPage)
async def person_events(
    request: Request,
    key: Key,
    person_id: str,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> Any:
    """The person's events from all its devices and ids, newest first."""
    await _person_or_404(request, key, person_id)
    page = await _read(request, lambda conn: reads.events_page(conn, key.project_id, person_id, limit, cursor))
    return {"results": page.results, "next": page.next_cursor}


@router.post("/persons/import", response_model=schemas.ImportResponse)
async def import_persons(request: Request, key: Key, body: schemas.ImportRequest) -> Any:
    """Create persons brought from another tool; each is imported or refused on its own."""
    state = _state(request)
    project = state.project(key.project_id)
    now = state.now()
    commands: list[ImportPerson | str] = []
    for item in body.persons:
        created_at = parse_time(item.created_at) if item.created_at else now
        if created_at is None:
            commands.append(f"created_at {item.created_at!r} is not an ISO-8601 time")
            continue
        commands.append(
            ImportPerson(tuple(item.distinct_ids), tuple(item.user_ids), item.properties, item.is_identified, created_at, _actor(key))
        )
    return await _write(state, lambda context: apply_imports(context, project.id, project.settings, commands))


@router.get("/warnings", response_model=schemas.WarningPage)
async def warnings(
    request: Request,
    key: Key,
    type: Annotated[str | None, Query(description="Only warnings of this type.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> Any:
    """Ingestion warnings, newest first: every refusal and alteration idstitch made."""
    page = await _read(request, lambda conn: reads.warnings_page(conn, key.project_id, limit, cursor, type))
    return {"results": page.results, "next": page.next_cursor}


@router.get("/dead-letters", response_model=schemas.DeadLetterPage)
async def dead_letters(
    request: Request, key: Key, limit: Annotated[int, Query(ge=1, le=1000)] = 100, cursor: str | None = None
) -> Any:
    """Events that were rejected, kept as they were received, newest first."""
    page = await _read(request, lambda conn: reads.dead_letters_page(conn, key.project_id, limit, cursor))
    return {"results": page.results, "next": page.next_cursor}


@router.get("/status", response_model=schemas.Status)
async def status(request: Request, key: Key) -> Any:
    """This server and its store: sizes on disk (the WAL included) and whether writes commit."""
    state = _state(request)
    writer = state.writer
    fault = writer.stopped or writer.fault
    sizes = await run_in_threadpool(state.store.sizes)
    analytics = None if state.analytics is None else await run_in_threadpool(state.analytics.status)
    return {
        "version": idstitch.__version__,
        "store": state.store.description,
        **sizes,
        "durability": dict(writer.session.durability),
        "writer": {"running": writer.stopped is None, "fault": None if fault is None else str(fault)},
        "analytics": analytics,
    }


@router.get("/project/settings", response_model=schemas.ProjectSettingsModel)
async def get_settings(request: Request, key: Key) -> Any:
    """The project's identity and attribute settings."""
    return _state(request).project(key.project_id).settings.to_json()


@router.patch("/project/settings", response_model=schemas.ProjectSettingsModel)
async def patch_settings(request: Request, key: Key, changes: dict[str, Any]) -> Any:
    """Change some settings; unknown names and bad values get a 400 naming them."""
    state = _state(request)
    project = state.project(key.project_id)
    try:
        updated = project.settings.updated(changes)
    except IdstitchError as error:
        raise http_error(error) from None

    def store(context: WriteContext) -> None:
        save_settings(context.conn, project.id, updated)
        context.persons(project.id).audit(str(_actor(key)), "settings", {"changes": changes})

    await _write(state, store)
    state.forget_project(project)
    return updated.to_json()
