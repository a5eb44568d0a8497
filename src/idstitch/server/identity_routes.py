"""Operator identity actions over the API: merge, split, undo (and redo) one link-log entry, and
dry runs of those and of an identify or alias. Each goes through the one writer; each dry run
(`?dry_run=true`, or the /api/preview routes) is the action rolled back (operations.py), and
answers what it would change.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request

from idstitch import operations, rule_previews
from idstitch.attributes import AttributeOps
from idstitch.commands import Actor
from idstitch.errors import IdstitchError
from idstitch.ingest.pipeline import WriteContext
from idstitch.operations import Action, IdentityChange, Previewed, identity_change
from idstitch.server import schemas
from idstitch.server.api_requests import API_ERRORS, ApiRoute
from idstitch.server.api_routes import Key
from idstitch.server.http_errors import http_error
from idstitch.server.state import AppState
from idstitch.settings import ProjectSettings
from idstitch.store import reads
from idstitch.store.connection import Connection
from idstitch.store.projects import SecretKey

router = APIRouter(prefix="/api", tags=["identity"], route_class=ApiRoute, responses=API_ERRORS)

DryRun = Annotated[bool, Query(description="Change nothing: answer what the action would change.")]
LinkId = Annotated[int, Path(ge=1, le=2**63 - 1, description="An entry of the link log.")]


def _state(request: Request) -> AppState:
    return request.app.state.idstitch


def _actor(key: SecretKey) -> Actor:
    return Actor("admin", key.id)


MakeAction = Callable[[int, ProjectSettings], Action]


async def run_action(state: AppState, project_id: int, make: MakeAction, *, dry_run: bool) -> IdentityChange:
    """Run the action `make(project_id, settings)` builds, through the writer: what it changed,
    or with `dry_run` what it would change. Raises what the action raises (the UI shares this)."""
    project = state.project(project_id)
    action = make(project.id, project.settings)
    try:
        return await state.writer.write(identity_change(project.id, project.settings, action, dry_run=dry_run))
    except Previewed as preview:
        return preview.change


async def preview_rule_change(state: AppState, project_id: int, changes: dict[str, Any], days: int) -> rule_previews.RulePreview:
    """What the project's settings with `changes` would have done over the last `days` of the
    link log; InvalidSetting when the changes are wrong. Nothing is changed (the UI shares this)."""
    project = state.project(project_id)
    proposed = project.settings.updated(changes)
    since = state.now() - timedelta(days=days)

    def run(context: WriteContext) -> rule_previews.RulePreview:
        store: rule_previews.RuleHistory = context.persons(project.id)  # type: ignore[assignment]
        return rule_previews.preview_rules(store, project.id, project.settings, proposed, since)

    return await state.writer.write(run)


async def _act(request: Request, key: SecretKey, make: MakeAction, *, dry_run: bool) -> IdentityChange:
    try:
        return await run_action(_state(request), key.project_id, make, dry_run=dry_run)
    except IdstitchError as error:
        raise http_error(error) from None


async def _persons(request: Request, key: SecretKey, person_ids: list[str]) -> list[dict[str, Any]]:
    def read(conn: Connection) -> list[dict[str, Any]]:
        return [p for person_id in person_ids if (p := reads.person(conn, key.project_id, person_id))]

    try:
        return await _state(request).slots.run(read)
    except IdstitchError as error:
        raise http_error(error) from None


@router.post("/persons/merge", response_model=schemas.Person | schemas.IdentityChange)
async def merge(request: Request, key: Key, body: schemas.MergeRequest, dry_run: DryRun = False) -> Any:
    """Merge the source id's person into the target id's person, identified or not (PostHog's
    `$merge_dangerously`). Logged with the key that asked. Answers the merged person, or with
    `dry_run` what the merge would change."""
    target, source = body.target_distinct_id, body.source_distinct_id
    change = await _act(
        request, key, lambda p, s: operations.merge(p, s, target, source, _actor(key)), dry_run=dry_run
    )
    if dry_run:
        return change.to_json()
    merged = [p["id"] for p in change.changes.persons_after if target in p["distinct_ids"]]
    found = await _persons(request, key, merged)
    if not found:
        raise HTTPException(404, f"No person owns distinct id {target!r}")
    return found[0]


@router.post("/persons/{person_id}/split", response_model=list[schemas.Person] | schemas.IdentityChange)
async def split(request: Request, key: Key, person_id: str, body: schemas.SplitRequest, dry_run: DryRun = False) -> Any:
    """Give the chosen ids (all when omitted) persons of their own, or give each of `groups` one
    person; their attributes are re-derived from each id's own events. Answers the persons the
    ids now belong to, or with `dry_run` what the split would change."""
    if body.groups is not None and body.distinct_ids is not None:
        raise HTTPException(400, "Send either `distinct_ids` or `groups`, not both")
    ids = tuple(body.distinct_ids) if body.distinct_ids is not None else None
    groups = tuple(tuple(g) for g in body.groups) if body.groups is not None else None
    change = await _act(
        request, key, lambda p, s: operations.split(p, s, person_id, ids, groups, _actor(key)), dry_run=dry_run
    )
    if dry_run:
        return change.to_json()
    return await _persons(request, key, sorted(p["id"] for p in change.changes.persons_after))


@router.get("/links/{link_id}", response_model=schemas.Link)
async def link(request: Request, key: Key, link_id: LinkId) -> Any:
    """One entry of the link log, with the outcome it has now."""
    found = await _state(request).slots.run(lambda conn: reads.link(conn, key.project_id, link_id))
    if found is None:
        raise HTTPException(404, f"No link-log entry {link_id}")
    return found


@router.post("/links/{link_id}/undo", response_model=schemas.IdentityChange)
async def undo(request: Request, key: Key, link_id: LinkId, dry_run: DryRun = False) -> Any:
    """Undo one identify, alias, merge or split: the persons become what they would be had it
    never happened, every later entry re-decided by the same rules. Undoing an `undo` entry redoes
    what it undid. Appends an `undo` entry and is audited; with `dry_run`, answers what it would
    change."""
    change = await _act(request, key, lambda p, s: operations.undo(p, s, link_id, _actor(key)), dry_run=dry_run)
    return change.to_json()


@router.post("/preview/identify", response_model=schemas.IdentityChange)
async def preview_identify(request: Request, key: Key, body: schemas.IdentifyPreview) -> Any:
    """What an identify of `user_id` from `anonymous_id` (with these attributes) would change if
    it arrived now over the ingest path. Nothing is stored."""
    now = _state(request).now()
    ops = AttributeOps(set=body.set, set_once=body.set_once)
    change = await _act(
        request, key, lambda p, s: operations.tried_identify(p, s, body.user_id, body.anonymous_id, ops, now), dry_run=True
    )
    return change.to_json()


@router.post("/preview/alias", response_model=schemas.IdentityChange)
async def preview_alias(request: Request, key: Key, body: schemas.AliasPreview) -> Any:
    """What an alias of the source id to the target id would change if it arrived now. Nothing is stored."""
    now = _state(request).now()
    target, source = body.target_distinct_id, body.source_distinct_id
    change = await _act(request, key, lambda p, s: operations.tried_alias(p, s, target, source, now), dry_run=True)
    return change.to_json()


@router.post("/rules/preview", response_model=schemas.RulePreview)
async def preview_rules(request: Request, key: Key, body: schemas.RulePreviewRequest) -> Any:
    """What changing these settings (identity rules, limits, illegal ids, attribute rules) would
    have done over the last `days` of the link log: each group of ids an entry named is replayed
    under the settings of now and under the ones tried. Nothing is changed."""
    try:
        preview = await preview_rule_change(_state(request), key.project_id, body.changes, body.days)
    except IdstitchError as error:
        raise http_error(error) from None
    return preview.to_json()
