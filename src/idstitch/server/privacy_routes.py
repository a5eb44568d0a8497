"""Privacy and security routes (secret key only): lookup, export and erasure of a person, the
suppression counters, the read-only audit log, and secret-key administration.

Every export, lookup, erasure and key change is written to the audit log with the key that
asked; the audit entry names the person only by a keyed hash (store/privacy.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from idstitch.errors import IdstitchError
from idstitch.ingest.pipeline import WriteContext
from idstitch.server import schemas
from idstitch.server.api_requests import API_ERRORS, ApiRoute
from idstitch.server.api_routes import Key
from idstitch.server.http_errors import http_error
from idstitch.server.state import AppState
from idstitch.store import privacy
from idstitch.store.connection import Connection
from idstitch.store.privacy import Selector
from idstitch.store.projects import SecretKey

T = TypeVar("T")
router = APIRouter(prefix="/api", tags=["privacy"], route_class=ApiRoute, responses=API_ERRORS)

MAX_SELECTOR_LENGTH = 1000
# Row ids are 64-bit signed integers in both stores.
MAX_ROW_ID = 2**63 - 1
# How long an erasure waits for readers whose snapshots still hold the erased data (queries
# have deadlines of a few seconds), and how long a retry (GET /privacy/erasure) waits.
ERASURE_WAIT_SECONDS = 5.0
RETRY_WAIT_SECONDS = 1.0


# -- shapes ----------------------------------------------------------------------------------


class PrivacyEvent(BaseModel):
    uuid: str
    distinct_id: str
    event: str
    timestamp: str
    received_at: str
    session_id: str | None
    properties: dict[str, Any]
    operations: dict[str, Any]


class RetiredEvent(BaseModel):
    uuid: str
    distinct_id: str
    event: str
    timestamp: str
    properties: dict[str, Any] = Field(description="Only those that set automatic attributes (device, page, campaign).")
    operations: dict[str, Any]


class Session(BaseModel):
    session_id: str
    distinct_ids: list[str]
    started_at: str
    ended_at: str
    event_count: int
    identified: bool = Field(description="An identify happened in this session.")
    event_uuids: list[str]


class PersonRecord(schemas.Person):
    attributes: list[schemas.Attribute]
    sessions: list[Session]
    events: list[PrivacyEvent] = Field(description="Every event of every id of the person, oldest first.")
    retired_events: list[RetiredEvent] = Field(
        description="What is kept of the events past `events_retention_days` that an undo or a split replays, oldest first."
    )
    links: list[schemas.Link]
    warnings: list[schemas.IngestionWarning] = Field(description="Warnings that mention the person's ids or email.")
    dead_letters: list[schemas.DeadLetter] = Field(description="Rejected events that mention the person's ids or email.")


class Lookup(BaseModel):
    query: dict[str, str]
    persons: list[PersonRecord]
    unattributed_events: list[PrivacyEvent] = Field(
        description="Events of the named id that no person owns (`$process_person_profile: false`, `identified_only`)."
    )
    unattributed_retired_events: list[RetiredEvent]
    unattributed_sessions: list[Session]
    unattributed_warnings: list[schemas.IngestionWarning]
    unattributed_dead_letters: list[schemas.DeadLetter]


class Export(Lookup):
    format: str
    project_id: int
    exported_at: str


class DeleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    distinct_id: str | None = Field(None, min_length=1, max_length=MAX_SELECTOR_LENGTH)
    user_id: str | None = Field(None, min_length=1, max_length=MAX_SELECTOR_LENGTH)
    email: str | None = Field(None, min_length=1, max_length=MAX_SELECTOR_LENGTH)
    person_id: str | None = Field(None, min_length=1, max_length=MAX_SELECTOR_LENGTH)
    suppress: bool = Field(False, description="Drop (and count) later events from the person's ids; keep only keyed hashes of them.")
    keep_anonymised_counts: bool = Field(
        False, description="Keep the events for totals, under a random token, without ids, properties or sessions."
    )


class Erased(BaseModel):
    persons: int
    distinct_ids: int
    attributes: int
    events_deleted: int
    events_anonymised: int
    retired_events: int = Field(description="What retention kept of the person's expired events, for undo and split.")
    links: int
    warnings: int
    dead_letters: int
    audit_entries_redacted: int
    others_events_redacted: int = Field(
        description="Other ids' events (identifies, aliases, merges) that named the erased ids: those now hold keyed hashes."
    )
    suppressed_ids: int


class ErasureFiles(BaseModel):
    complete: bool = Field(
        description="The erased data has left the store's files (SQLite: database file and WAL; PostgreSQL: vacuumed)."
    )
    pending: str | None = Field(description="When not complete: what still holds the data. GET /api/privacy/erasure retries.")
    remains: list[str] = Field(description="Copies beyond the store's reach (PostgreSQL's free space and WAL, backups).")


class DeleteResponse(ErasureFiles):
    erased: Erased
    suppress: bool
    keep_anonymised_counts: bool


class SuppressionStats(BaseModel):
    suppressed_ids: int = Field(description="Distinct ids whose events are dropped (stored only as keyed hashes).")
    dropped_events: int = Field(description="Events dropped since, because they carried a suppressed id.")
    last_dropped_at: str | None


class SuppressionCheck(BaseModel):
    suppressed: bool


class AuditEntry(BaseModel):
    id: int
    actor: str = Field(description="`admin:<key id>`, `cli`, or `ingest`.")
    action: str
    details: dict[str, Any]
    created_at: str


class AuditPage(BaseModel):
    results: list[AuditEntry]
    next: str | None


class KeyInfo(BaseModel):
    id: int
    label: str
    created_at: str
    revoked_at: str | None


class CreatedKey(KeyInfo):
    secret: str = Field(description="The key itself. Shown this once: only its hash is stored.")


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = Field("api", min_length=1, max_length=200)


# -- helpers ---------------------------------------------------------------------------------


def _state(request: Request) -> AppState:
    return request.app.state.idstitch


def _actor(key: SecretKey) -> str:
    return f"admin:{key.id}"


async def _read(request: Request, fn: Callable[[Connection], T]) -> T:
    try:
        return await _state(request).slots.run(fn)
    except IdstitchError as error:
        raise http_error(error) from None


async def _write(request: Request, fn: Callable[[WriteContext], T]) -> T:
    try:
        return await _state(request).writer.write(fn)
    except IdstitchError as error:
        raise http_error(error) from None


def _selector(**given: str | None) -> Selector:
    try:
        return Selector.one_of(**given)
    except IdstitchError as error:
        raise http_error(error) from None


SelectorParam = Annotated[str | None, Query(min_length=1, max_length=MAX_SELECTOR_LENGTH)]


async def _audited_lookup(request: Request, key: SecretKey, selector: Selector, action: str, export: bool) -> dict[str, Any]:
    state = _state(request)

    def read(conn: Connection) -> dict[str, Any]:
        if export:
            return privacy.export_document(conn, key.project_id, selector, state.now())
        return privacy.lookup(conn, key.project_id, selector)

    document = await _read(request, read)

    def audit(context: WriteContext) -> None:
        details = {**privacy.audit_selector(context.conn, key.project_id, selector), "persons": len(document["persons"])}
        privacy.write_audit(context.conn, key.project_id, _actor(key), action, details, context.now())

    await _write(request, audit)
    return document


# -- routes ----------------------------------------------------------------------------------


@router.get("/privacy/persons", response_model=Lookup)
async def lookup_person(
    request: Request,
    key: Key,
    distinct_id: SelectorParam = None,
    user_id: SelectorParam = None,
    email: SelectorParam = None,
    person_id: SelectorParam = None,
) -> Any:
    """Everything held about the person(s) named by exactly one of `distinct_id` (any of its
    ids), `user_id`, `email` (the `email` attribute, or an id equal to it) or `person_id`: ids,
    attributes, sessions, events, links, and the warnings and dead letters that mention them.
    Logged in the audit log."""
    selector = _selector(distinct_id=distinct_id, user_id=user_id, email=email, person_id=person_id)
    return await _audited_lookup(request, key, selector, "lookup", export=False)


@router.get("/privacy/export", response_model=Export)
async def export_person(
    request: Request,
    response: Response,
    key: Key,
    distinct_id: SelectorParam = None,
    user_id: SelectorParam = None,
    email: SelectorParam = None,
    person_id: SelectorParam = None,
) -> Any:
    """The lookup as one downloadable JSON document (a subject access request's answer).
    Logged in the audit log."""
    selector = _selector(distinct_id=distinct_id, user_id=user_id, email=email, person_id=person_id)
    response.headers["Content-Disposition"] = 'attachment; filename="idstitch-person-export.json"'
    return await _audited_lookup(request, key, selector, "export", export=True)


async def forget_erased(request: Request, wait: float) -> dict[str, Any]:
    """Have the store drop its copies of erased rows; remember what is pending, for GET /privacy/erasure."""
    state = _state(request)
    pending = await run_in_threadpool(state.store.forget_erased, wait)
    if state.analytics is not None:
        copy_pending = await run_in_threadpool(state.analytics.forget_erased, wait)
        pending = "; ".join(p for p in (pending, copy_pending) if p) or None
    state.erasure_pending = pending
    return {
        "complete": pending is None,
        "pending": pending and f"{pending}; GET /api/privacy/erasure retries",
        "remains": list(state.store.erasure_remains),
    }


@router.post(
    "/privacy/delete", response_model=DeleteResponse,
    responses={202: {"model": DeleteResponse, "description": "Erased, but its bytes are still in the files (`pending`)."}},
)
async def delete_person(request: Request, response: Response, key: Key, body: DeleteRequest) -> Any:
    """Erase the person(s) named by exactly one selector: persons, id mapping, attributes,
    events, links, and the warnings and dead letters holding their data; mentions in the audit
    log and in other ids' events are replaced by keyed hashes. `suppress`: later events from their
    ids are dropped and counted. `keep_anonymised_counts`: events stay for totals, without ids or
    properties. 404 when nothing is held (and `suppress` is off). Logged in the audit log.

    200 once the erased data has also left the store's files; 202 when a reader's snapshot still
    holds it after a few seconds (`pending` says what): GET /api/privacy/erasure retries."""
    selector = _selector(distinct_id=body.distinct_id, user_id=body.user_id, email=body.email, person_id=body.person_id)
    report = await _write(
        request,
        lambda context: privacy.erase(
            context.conn, key.project_id, selector, actor=_actor(key), now=context.now(),
            suppress=body.suppress, keep_anonymised_counts=body.keep_anonymised_counts,
        ),
    )
    files = await forget_erased(request, ERASURE_WAIT_SECONDS)
    if not files["complete"]:
        response.status_code = 202
    return {"erased": report.to_json(), "suppress": body.suppress, "keep_anonymised_counts": body.keep_anonymised_counts,
            **files}


@router.get("/privacy/erasure", response_model=ErasureFiles)
async def erasure_status(request: Request, key: Key) -> Any:
    """Whether the data of this server's erasures has left the store's files; when an erasure
    was answered 202 (pending), this tries again to remove it."""
    state = _state(request)
    if state.erasure_pending is None:
        return {"complete": True, "pending": None, "remains": list(state.store.erasure_remains)}
    return await forget_erased(request, RETRY_WAIT_SECONDS)


@router.get("/privacy/suppressions", response_model=SuppressionStats)
async def suppressions(request: Request, key: Key) -> Any:
    """How many ids are suppressed and how many events were dropped because of them."""
    return await _read(request, lambda conn: privacy.suppression_stats(conn, key.project_id))


@router.get("/privacy/suppressions/check", response_model=SuppressionCheck)
async def check_suppression(
    request: Request, key: Key, distinct_id: Annotated[str, Query(min_length=1, max_length=MAX_SELECTOR_LENGTH)]
) -> Any:
    """Whether events from this distinct id are dropped (answered from its keyed hash)."""
    return {"suppressed": await _read(request, lambda conn: privacy.is_suppressed(conn, key.project_id, distinct_id))}


@router.get("/audit-log", response_model=AuditPage)
async def audit_log(
    request: Request,
    key: Key,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Any:
    """Admin actions, newest first: merges, splits, settings changes, lookups, exports,
    erasures and key changes, each with the key that asked. Read-only: the API has no way to
    change or remove an entry."""
    page = await _read(request, lambda conn: privacy.audit_page(conn, key.project_id, limit, cursor))
    return {"results": page.results, "next": page.next_cursor}


@router.get("/keys", response_model=list[KeyInfo])
async def list_keys(request: Request, key: Key) -> Any:
    """The project's secret keys by id and label (never the secrets: only hashes are stored)."""
    return await _read(request, lambda conn: privacy.list_secret_keys(conn, key.project_id))


@router.post("/keys", response_model=CreatedKey, status_code=201)
async def create_key(request: Request, key: Key, body: KeyRequest | None = None) -> Any:
    """Create a secret key; the answer holds the secret, shown this once."""
    label = body.label if body is not None else "api"
    return await _write(
        request, lambda context: privacy.create_secret_key(context.conn, key.project_id, label, _actor(key), context.now())
    )


@router.delete("/keys/{key_id}", response_model=KeyInfo)
async def revoke_key(request: Request, key: Key, key_id: Annotated[int, Path(ge=1, le=MAX_ROW_ID)]) -> Any:
    """Revoke a secret key: it stops working with the next request. The last active key cannot
    be revoked (409): create another first."""
    return await _write(
        request, lambda context: privacy.revoke_secret_key(context.conn, key.project_id, key_id, _actor(key), context.now())
    )
