"""The web UI under `/ui/`: server-rendered pages for the operator, signed in with a secret key.

Pages read through the same functions as the API (`store/reads.py`, `query/`), paged by keyset
cursors, so they cost the same with 100k persons as with 100. Forms are plain HTML; every POST
is checked for its CSRF token (`ui_auth.py`). Changes go through the same code as the API:
settings through `PATCH /api/project/settings`'s handler, segments and keys through the same
store functions inside the writer, each audited.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from idstitch.errors import RequestError
from idstitch.ingest.pipeline import WriteContext
from idstitch.query import events, people, sessions
from idstitch.query import segments as saved
from idstitch.query.compiler import PERSONS, SESSIONS, TRUE, Compiler, Sql, join
from idstitch.query.filters import FilterError, FilterNode, parse_filter
from idstitch.server import api_routes, ui_forms, ui_identity, ui_rules, ui_search, ui_segments
from idstitch.server.ui_auth import (
    LOGIN_COOKIE,
    SIGNIN_COOKIE,
    UIRoute,
    check_login_form,
    clear_cookie,
    login_nonce,
    read_form,
    require_form,
    require_key,
    safe_next,
    set_cookie,
    signed_in,
    state_of,
)
from idstitch.server.ui_forms import OPS, FormError, Row
from idstitch.server.ui_pages import (
    PAGE_SIZE,
    actor,
    flag,
    message_page,
    moment,
    page,
    positive_id,
    problems,
    query,
    redirect,
    write,
)
from idstitch.store import privacy, reads, signins, summaries
from idstitch.store.connection import Connection
from idstitch.store.projects import SecretKey
from idstitch.web.descriptions import WARNING_TYPES, merge_restrictions
from idstitch.web.pages import STATIC_FILES, static_file

router = APIRouter(route_class=UIRoute, include_in_schema=False)
router.include_router(ui_segments.router)
router.include_router(ui_identity.router)
router.include_router(ui_rules.router)


# -- entry, sign-in, static ------------------------------------------------------------------


@router.get("/")
async def root() -> Response:
    return redirect("/ui/")


@router.get("/ui")
@router.get("/ui/")
async def home(request: Request) -> Response:
    return redirect("/ui/users")


@router.get("/ui/static/{name}")
async def static(name: str) -> Response:
    if name not in STATIC_FILES:
        return Response("Not found", status_code=404, media_type="text/plain")
    body, digest = static_file(name)
    return Response(body, media_type=STATIC_FILES[name],
                    headers={"Cache-Control": "public, max-age=86400", "ETag": f'"{digest}"'})


def _login_page(request: Request, next_url: str, error: str | None = None, status_code: int = 200) -> HTMLResponse:
    nonce = login_nonce()
    response = page(request, None, "login.html", "login", status_code=status_code, title="Sign in",
                     next=next_url, nonce=nonce, error=error,
                     signed_out=request.query_params.get("signed_out") == "1")
    set_cookie(response, request, LOGIN_COOKIE, nonce, max_age=3600)
    return response


@router.get("/ui/login")
async def login_form(request: Request) -> Response:
    next_url = safe_next(request.query_params.get("next"))
    if await signed_in(request) is not None:
        return redirect(next_url)
    return _login_page(request, next_url)


@router.post("/ui/login")
async def login(request: Request) -> Response:
    form = await read_form(request)
    next_url = safe_next(form.get("next"))
    if not check_login_form(request, form):
        return _login_page(request, next_url, "The sign-in form expired. Please try again.", status_code=403)
    secret = form.get("secret_key").strip()
    state = state_of(request)
    key = await run_in_threadpool(state.key_for_secret, secret) if 0 < len(secret) <= 200 else None
    if key is None:
        return _login_page(request, next_url, "That is not a valid secret key (ingest tokens cannot sign in).", status_code=401)

    def start(context: WriteContext) -> str:
        token = signins.create_signin(context.conn, key, context.now())
        privacy.write_audit(context.conn, key.project_id, actor(key), "ui_sign_in", {}, context.now())
        return token

    token = await write(request, start)
    response = redirect(next_url)
    set_cookie(response, request, SIGNIN_COOKIE, token, max_age=int(signins.LIFETIME.total_seconds()))
    clear_cookie(response, request, LOGIN_COOKIE)
    return response


@router.post("/ui/logout")
async def logout(request: Request) -> Response:
    key, _ = await require_form(request)
    token = request.cookies.get(SIGNIN_COOKIE, "")

    def end(context: WriteContext) -> None:
        signins.delete_signin(context.conn, token)
        privacy.write_audit(context.conn, key.project_id, actor(key), "ui_sign_out", {}, context.now())

    await write(request, end)
    response = redirect("/ui/login?signed_out=1")
    clear_cookie(response, request, SIGNIN_COOKIE)
    return response


# -- users -----------------------------------------------------------------------------------


def _condition_row(params: Any) -> Row:
    return Row("attribute", params.get("attr", "").strip(), params.get("op", "equals") or "equals", params.get("value", ""))


@router.get("/ui/users")
async def users(request: Request) -> Response:
    """Users, newest first. A search finds the person owning that exact distinct id, persons whose
    email is or starts with it, then names and emails containing it (ui_search.py)."""
    key = await require_key(request)
    params = request.query_params
    q = params.get("q", "").strip()[:200]
    identified = flag(params.get("identified", ""))
    segment_id = positive_id(params.get("segment_id", ""))
    row = _condition_row(params)
    cursor = params.get("cursor") or None
    filter_text = params.get("filter", "")

    def run(conn: Connection, compiler: Compiler) -> dict[str, Any]:
        nodes: list[FilterNode] = []
        if row.key:
            nodes.append(parse_filter(ui_forms.condition(row, 0)))
        _, given = ui_forms.parse_filter_text(filter_text)
        if given is not None:
            nodes.append(given)
        parts = [compiler.compile(n, PERSONS) for n in nodes]
        exact: list[dict[str, Any]] = []
        if q:
            parts.append(ui_search.text_search(conn, q))
            if cursor is None:
                exact = ui_search.exact_matches(conn, key.project_id, q)
        if identified is not None:
            parts.append(Sql("p.is_identified = ?", (int(identified),)))
        if segment_id is not None:
            parts.append(compiler.segment(segment_id, PERSONS))
        found = people.persons_page(conn, key.project_id, join(parts, "AND"), PAGE_SIZE, cursor)
        shown = {p["id"] for p in exact}
        listed = [p for p in found.results if p["id"] not in shown]
        seen = summaries.last_seen(conn, key.project_id, [p["id"] for p in exact + listed])
        return {"exact": exact, "persons": listed, "next": found.next_cursor, "last_seen": seen,
                "segments": saved.list_segments(conn, key.project_id)}

    error = None
    try:
        data = await query(request, key, run)
    except (FilterError, FormError, RequestError) as failure:
        error = problems(failure)
        data = {"exact": [], "persons": [], "next": None, "last_seen": {}, "segments": []}
    return page(request, key, "users.html", "users", status_code=400 if error else 200, title="Users", error=error,
                q=q, identified=params.get("identified", ""), segment_id=segment_id, row=row, ops=OPS,
                filter_text=filter_text, cursor=cursor, **data)


@router.get("/ui/find")
async def find(request: Request) -> Response:
    """From a distinct id to its person's profile (or a search for it when nobody owns it)."""
    key = await require_key(request)
    distinct_id = request.query_params.get("distinct_id", "")
    person_id = await query(request, key, lambda conn, _: reads.person_id_for_distinct_id(conn, key.project_id, distinct_id))
    if person_id:
        return redirect(f"/ui/persons/{person_id}")
    return redirect("/ui/users?" + urlencode({"q": distinct_id}))


# -- person profile --------------------------------------------------------------------------


@router.get("/ui/persons/{person_id}")
async def person(request: Request, person_id: str) -> Response:
    key = await require_key(request)
    events_cursor = request.query_params.get("events") or None
    settings = state_of(request).project(key.project_id).settings
    # The other persons an identity change just left (ui_identity.py), named under its notice.
    affected = request.query_params.get("affected", "").split(",")[: ui_identity.MAX_AFFECTED]

    def run(conn: Connection, compiler: Compiler) -> dict[str, Any] | None:
        found = reads.person(conn, key.project_id, person_id)
        if found is None:
            return None
        links = reads.links(conn, key.project_id, person_id)
        refused = [link["event_uuid"] for link in links if link["outcome"].startswith("refused") and link["event_uuid"]]
        return {
            "person": found,
            "ids": summaries.distinct_ids_with_dates(conn, key.project_id, person_id),
            "attributes": reads.attributes(conn, person_id),
            "sessions": sessions.sessions_page(conn, key.project_id, TRUE, person_id=person_id, limit=20),
            "events": reads.events_page(conn, key.project_id, person_id, PAGE_SIZE, events_cursor),
            "links": links,
            "undone": summaries.undone_entries(conn, key.project_id, links),
            "affected": [p for other in affected if other and (p := reads.person(conn, key.project_id, other))],
            "link_warnings": summaries.warnings_for_events(conn, key.project_id, refused),
            "last_seen": summaries.last_seen(conn, key.project_id, [person_id]).get(person_id),
        }

    try:
        data = await query(request, key, run)
    except RequestError as failure:
        return message_page(request, key, 400, "Bad request", str(failure))
    if data is None:
        return message_page(request, key, 404, "Not found", f"No person with id {person_id!r}: it may have been merged into another or deleted.")
    found = data["person"]
    restrictions = merge_restrictions(found["user_ids"], found["distinct_ids"], found["is_identified"], settings)
    return page(request, key, "person.html", "users", title=found["display_name"], restrictions=restrictions,
                 events_cursor=events_cursor, undoable=ui_identity.UNDOABLE, **data)


# -- sessions --------------------------------------------------------------------------------


@router.get("/ui/sessions")
async def session_list(request: Request) -> Response:
    key = await require_key(request)
    params = request.query_params
    identified, inferred = flag(params.get("identified", "")), flag(params.get("inferred", ""))
    segment_id = positive_id(params.get("segment_id", ""))
    row = _condition_row(params)
    person_id = params.get("person_id") or None
    cursor = params.get("cursor") or None
    filter_text = params.get("filter", "")
    after_text, before_text = params.get("after", "").strip(), params.get("before", "").strip()
    now = state_of(request).now()

    def run(conn: Connection, compiler: Compiler) -> dict[str, Any]:
        nodes: list[FilterNode] = []
        if row.key:
            nodes.append(parse_filter(ui_forms.condition(row, 0)))
        _, given = ui_forms.parse_filter_text(filter_text)
        if given is not None:
            nodes.append(given)
        where = join([compiler.compile(n, SESSIONS) for n in nodes], "AND")
        if segment_id is not None:
            where = join([where, compiler.segment(segment_id, SESSIONS)], "AND")
        after = moment(after_text, "after", now)
        before = moment(before_text, "before", now)
        page = sessions.sessions_page(
            conn, key.project_id, where, person_id=person_id, after=after, before=before,
            identified=identified, inferred=inferred, limit=PAGE_SIZE, cursor=cursor,
        )
        subject = reads.person(conn, key.project_id, person_id) if person_id else None
        return {"sessions": page.results, "next": page.next_cursor, "segments": saved.list_segments(conn, key.project_id),
                "subject": subject}

    error = None
    try:
        data = await query(request, key, run)
    except (FilterError, FormError, RequestError) as failure:
        error = problems(failure)
        data = {"sessions": [], "next": None, "segments": [], "subject": None}
    return page(request, key, "sessions.html", "sessions", status_code=400 if error else 200, title="Sessions",
                 error=error, identified=params.get("identified", ""), inferred=params.get("inferred", ""),
                 segment_id=segment_id, row=row, ops=OPS, person_id=person_id, cursor=cursor, filter_text=filter_text,
                 after=after_text, before=before_text, **data)


@router.get("/ui/sessions/{session_id:path}")
async def session_detail(request: Request, session_id: str) -> Response:
    key = await require_key(request)
    cursor = request.query_params.get("cursor") or None

    def run(conn: Connection, compiler: Compiler) -> dict[str, Any] | None:
        if not reads.free_of_nul(session_id):
            return None
        found = sessions.sessions_page(conn, key.project_id, Sql("s.session_id = ?", (session_id,)), limit=1).results
        if not found:
            return None
        page = events.events_page(conn, key.project_id, TRUE, session_id=session_id, limit=100, cursor=cursor)
        return {"session": found[0], "events": page.results, "next": page.next_cursor}

    try:
        data = await query(request, key, run)
    except RequestError as failure:
        return message_page(request, key, 400, "Bad request", str(failure))
    if data is None:
        return message_page(request, key, 404, "Not found", f"No session with id {session_id!r}.")
    return page(request, key, "session.html", "sessions", title=f"Session {session_id}", cursor=cursor, **data)


# -- warnings --------------------------------------------------------------------------------


@router.get("/ui/warnings")
async def warning_list(request: Request) -> Response:
    key = await require_key(request)
    kind = request.query_params.get("type") or None
    cursor = request.query_params.get("cursor") or None
    now = state_of(request).now()

    def run(conn: Connection, compiler: Compiler) -> dict[str, Any]:
        listed = reads.warnings_page(conn, key.project_id, PAGE_SIZE, cursor, kind) if kind else None
        return {"groups": summaries.warning_overview(conn, key.project_id, now),
                "listed": listed.results if listed else [], "next": listed.next_cursor if listed else None}

    try:
        data = await query(request, key, run)
    except RequestError as failure:
        return message_page(request, key, 400, "Bad request", str(failure))
    return page(request, key, "warnings.html", "warnings", title="Ingestion warnings", kind=kind, cursor=cursor,
                 descriptions=WARNING_TYPES, **data)


# -- settings --------------------------------------------------------------------------------


async def _settings_page(request: Request, key: SecretKey, status_code: int = 200, **context: Any) -> HTMLResponse:
    state = state_of(request)
    project = state.project(key.project_id)
    keys = await run_in_threadpool(lambda: privacy.list_secret_keys(state.reader(), key.project_id))
    context.setdefault("new_key", None)
    analytics = None if state.analytics is None else await run_in_threadpool(state.analytics.status)
    return page(request, key, "settings.html", "settings", status_code=status_code, title="Settings", project=project,
                 analytics=analytics,
                 settings=project.settings, keys=keys, property_types=ui_forms.property_types_text(project.settings.property_types),
                 acknowledgement=ui_forms.PRIVACY_ACKNOWLEDGEMENT, **context)


@router.get("/ui/settings")
async def settings_form(request: Request) -> Response:
    key = await require_key(request)
    return await _settings_page(request, key)


@router.post("/ui/settings")
async def settings_save(request: Request) -> Response:
    key, form = await require_form(request)
    current = state_of(request).project(key.project_id).settings
    try:
        changes = ui_forms.settings_changes(form, current)
    except FormError as error:
        return await _settings_page(request, key, status_code=400, error=str(error))
    if not changes:
        return redirect("/ui/settings?notice=Nothing+changed.")
    try:
        # The API's own handler: ProjectSettings.updated, save through the writer, audit.
        await api_routes.patch_settings(request, key, changes)
    except HTTPException as error:
        return await _settings_page(request, key, status_code=error.status_code, error=str(error.detail))
    return redirect("/ui/settings?notice=Settings+saved.")


@router.post("/ui/settings/keys")
async def key_create(request: Request) -> Response:
    key, form = await require_form(request)
    label = form.get("label").strip()[:200] or "ui"
    created = await write(
        request, lambda context: privacy.create_secret_key(context.conn, key.project_id, label, actor(key), context.now())
    )
    return await _settings_page(request, key, new_key=created)


@router.post("/ui/settings/keys/{key_id}/revoke")
async def key_revoke(request: Request, key_id: str) -> Response:
    key, _ = await require_form(request)
    number = positive_id(key_id)
    if number is None:
        return message_page(request, key, 404, "Not found", f"No secret key with id {key_id!r}.")
    try:
        await write(
            request, lambda context: privacy.revoke_secret_key(context.conn, key.project_id, number, actor(key), context.now())
        )
    except RequestError as error:
        return await _settings_page(request, key, status_code=409, error=str(error))
    return redirect(f"/ui/settings?notice=Key+{number}+revoked.")
