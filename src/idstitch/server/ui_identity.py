"""Changing a person's identity from the UI: undo (or redo) one entry of its link log, merge
another person into it, split it by groups, and erase it.

Each action first shows a preview: its dry run (operations.py: the action run and rolled back),
in plain sentences and as the persons before and after. A GET shows it, so a preview has a URL
and changes nothing. The confirmation is a CSRF-checked POST of the same action for real, through
the API's own code (identity_routes.run_action, privacy.erase), audited with the signed-in key;
it redirects to the resulting person's page with a notice of what changed. An action the request
gets wrong (already undone, nothing to split) is a problem shown on the page with its 4xx status.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from idstitch import operations
from idstitch.errors import RequestError
from idstitch.identity import LinkKind
from idstitch.operations import IdentityChange
from idstitch.server import privacy_routes, ui_forms, ui_search
from idstitch.server.http_errors import status_of
from idstitch.server.identity_routes import MakeAction, run_action
from idstitch.server.ui_auth import UIRoute, require_form, require_key, state_of
from idstitch.server.ui_forms import SPLIT_GROUPS, Form, FormError
from idstitch.server.ui_pages import actor, admin, message_page, page, positive_id, query, redirect, write
from idstitch.store import privacy, reads, summaries
from idstitch.store.connection import Connection
from idstitch.store.privacy import Selector
from idstitch.store.projects import SecretKey
from idstitch.web.descriptions import change_summary

router = APIRouter(route_class=UIRoute, include_in_schema=False)

# The entries a person's page offers to undo (an `undo` entry's undo is a redo).
UNDOABLE = frozenset({LinkKind.IDENTIFY, LinkKind.ALIAS, LinkKind.MERGE, LinkKind.SPLIT, LinkKind.UNDO})
MERGE_CANDIDATES = 10
# Other persons a change left, named on the resulting person's page (`affected`).
MAX_AFFECTED = 10


@dataclass(frozen=True, slots=True)
class Confirm:
    """The confirmation form under a preview: it posts `fields` to `url`."""

    url: str
    label: str
    back: str
    fields: list[tuple[str, str]] = field(default_factory=list)
    danger: bool = False


@dataclass(slots=True)
class Outcome:
    """A preview's change (as JSON), or the problem the action raised and its status."""

    change: dict[str, Any] | None = None
    error: str | None = None
    status: int = 200

    @classmethod
    def failed(cls, error: Exception, status: int) -> Outcome:
        return cls(None, str(error), status)


# Builds the action from the form; FormError when the form cannot say which.
Build = Callable[[], MakeAction]


async def _run(request: Request, key: SecretKey, build: Build, *, dry_run: bool) -> IdentityChange | Outcome:
    """The action's change, or the Outcome naming what the form or the action got wrong."""
    try:
        return await run_action(state_of(request), key.project_id, build(), dry_run=dry_run)
    except FormError as error:
        return Outcome.failed(error, 400)
    except RequestError as error:
        return Outcome.failed(error, status_of(error))


async def _dry_run(request: Request, key: SecretKey, build: Build) -> Outcome:
    change = await _run(request, key, build, dry_run=True)
    return change if isinstance(change, Outcome) else Outcome(change.to_json())


async def _confirmed(
    request: Request, key: SecretKey, build: Build, done: str, keep: tuple[str | None, str | None],
    failed: Callable[[Outcome], Awaitable[Response]],
) -> Response:
    """Run the action for real: to the resulting person's page, or back to the form with the problem."""
    change = await _run(request, key, build, dry_run=False)
    if isinstance(change, Outcome):
        return await failed(change)
    return redirect(_landing(change, f"{done}: {change_summary(change.to_json())}.", *keep))


def _landing(change: IdentityChange, notice: str, person_id: str | None, distinct_id: str | None) -> str:
    """The page of the person the change left holding `person_id`'s id (else `distinct_id`),
    naming the other persons it left; the users list when it left none."""
    after = list(change.changes.persons_after)
    chosen = (
        next((p for p in after if p["id"] == person_id), None)
        or next((p for p in after if distinct_id in p["distinct_ids"]), None)
        or (after[0] if after else None)
    )
    if chosen is None:
        return "/ui/users?" + urlencode({"notice": notice})
    others = [p["id"] for p in after if p["id"] != chosen["id"]][:MAX_AFFECTED]
    return f"/ui/persons/{chosen['id']}?" + urlencode({"notice": notice, **({"affected": ",".join(others)} if others else {})})


async def _action_page(
    request: Request, key: SecretKey, template: str, title: str, confirm: Confirm, build: Build | None,
    failure: Outcome | None, **context: Any,
) -> Response:
    """An action's page: the preview of the action `build` makes (when the form chose one), or
    the problem `failure` names."""
    outcome = failure or (await _dry_run(request, key, build) if build else Outcome())
    return page(request, key, template, "users", status_code=outcome.status, title=title, change=outcome.change,
                error=outcome.error, confirm=confirm, **context)


def _not_found(request: Request, key: SecretKey, person_id: str) -> Response:
    return message_page(request, key, 404, "Not found", f"No person with id {person_id!r}: it may have been merged into another or deleted.")


def _person(conn: Connection, key: SecretKey, person_id: str) -> dict[str, Any] | None:
    return reads.person(conn, key.project_id, person_id) if person_id else None


# -- undo and redo ---------------------------------------------------------------------------


def _undo(number: int, key: SecretKey) -> MakeAction:
    return lambda project_id, settings: operations.undo(project_id, settings, number, admin(key))


async def _undo_page(request: Request, key: SecretKey, link_id: str, person_id: str, failure: Outcome | None = None) -> Response:
    number = positive_id(link_id)
    link, person = await query(request, key, lambda conn, _: (
        reads.link(conn, key.project_id, number) if number else None, _person(conn, key, person_id)))
    if number is None or link is None:
        return message_page(request, key, 404, "Not found", f"No link-log entry {link_id!r}.")
    title = f"Redo entry #{link['undoes']}" if link["kind"] == LinkKind.UNDO else f"Undo entry #{number}"
    back = f"/ui/persons/{person['id']}#links" if person else "/ui/users"
    confirm = Confirm(f"/ui/links/{number}/undo", title, back, [("person_id", person_id)])
    return await _action_page(request, key, "undo.html", title, confirm, lambda: _undo(number, key), failure,
                              link=link, person=person)


@router.get("/ui/links/{link_id}/undo")
async def undo_preview(request: Request, link_id: str) -> Response:
    """What undoing the entry (redoing, for an `undo` entry) would change, with the confirmation."""
    key = await require_key(request)
    return await _undo_page(request, key, link_id, request.query_params.get("person_id", ""))


@router.post("/ui/links/{link_id}/undo")
async def undo_confirm(request: Request, link_id: str) -> Response:
    key, form = await require_form(request)
    person_id = form.get("person_id")
    number = positive_id(link_id)
    if number is None:
        return await _undo_page(request, key, link_id, person_id)
    link = await query(request, key, lambda conn, _: reads.link(conn, key.project_id, number))
    done = f"Entry #{link['undoes']} redone" if link and link["kind"] == LinkKind.UNDO else f"Entry #{number} undone"
    kept = (person_id, link["target_distinct_id"] if link else None)
    return await _confirmed(request, key, lambda: _undo(number, key), done, kept,
                            lambda failure: _undo_page(request, key, link_id, person_id, failure))


# -- merge -----------------------------------------------------------------------------------


def _merge(person: dict[str, Any], source: str, key: SecretKey) -> MakeAction:
    """Merge the person owning `source` into `person`, which survives (the target)."""
    target = (person["user_ids"] or person["distinct_ids"])[0]
    if source in person["distinct_ids"]:
        raise FormError(f"The id {source!r} is already this person's: choose another person to merge into it")
    return lambda project_id, settings: operations.merge(project_id, settings, target, source, admin(key))


async def _merge_page(request: Request, key: SecretKey, person_id: str, q: str, source: str,
                      failure: Outcome | None = None) -> Response:
    def run(conn: Connection, _: Any) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        person = _person(conn, key, person_id)
        if person is None or not q:
            return person, []
        found = ui_search.matching_persons(conn, key.project_id, q, MERGE_CANDIDATES + 1)
        return person, [p for p in found if p["id"] != person_id][:MERGE_CANDIDATES]

    person, candidates = await query(request, key, run)
    if person is None:
        return _not_found(request, key, person_id)
    title = f"Merge into {person['display_name']}"
    confirm = Confirm(f"/ui/persons/{person_id}/merge", title, f"/ui/persons/{person_id}", [("source", source), ("q", q)])
    build = (lambda: _merge(person, source, key)) if source else None
    return await _action_page(request, key, "merge.html", title, confirm, build, failure,
                              person=person, q=q, source=source, candidates=candidates)


@router.get("/ui/persons/{person_id}/merge")
async def merge_preview(request: Request, person_id: str) -> Response:
    """Find the person to merge into this one (`q`); with `source` (one of its ids), the preview."""
    key = await require_key(request)
    params = request.query_params
    return await _merge_page(request, key, person_id, params.get("q", "").strip()[:200], params.get("source", ""))


@router.post("/ui/persons/{person_id}/merge")
async def merge_confirm(request: Request, person_id: str) -> Response:
    key, form = await require_form(request)
    q, source = form.get("q"), form.get("source")
    person = await query(request, key, lambda conn, _: _person(conn, key, person_id))
    if person is None:
        return _not_found(request, key, person_id)
    return await _confirmed(request, key, lambda: _merge(person, source, key), "Merged", (person_id, None),
                            lambda failure: _merge_page(request, key, person_id, q, source, failure))


# -- split -----------------------------------------------------------------------------------


def _split(person_id: str, form: Form, key: SecretKey) -> MakeAction:
    groups = ui_forms.split_groups(form)
    return lambda project_id, settings: operations.split(project_id, settings, person_id, None, groups, admin(key))


def _choices(form: Form) -> list[tuple[str, str]]:
    return [(name, value) for name, value in form.pairs if name.startswith(("id_", "group_"))]


async def _split_page(request: Request, key: SecretKey, person_id: str, form: Form, failure: Outcome | None = None) -> Response:
    person, ids = await query(request, key, lambda conn, _: (
        _person(conn, key, person_id), summaries.distinct_ids_with_dates(conn, key.project_id, person_id)))
    if person is None:
        return _not_found(request, key, person_id)
    confirm = Confirm(f"/ui/persons/{person_id}/split", "Split", f"/ui/persons/{person_id}", _choices(form))
    build = (lambda: _split(person_id, form, key)) if form.has("id_0") else None
    return await _action_page(request, key, "split.html", f"Split {person['display_name']}", confirm, build, failure,
                              person=person, ids=ids, chosen=ui_forms.split_choices(form), groups=SPLIT_GROUPS)


@router.get("/ui/persons/{person_id}/split")
async def split_preview(request: Request, person_id: str) -> Response:
    """Choose a group for each id (`id_<i>`, `group_<i>`); once chosen, the preview."""
    key = await require_key(request)
    return await _split_page(request, key, person_id, Form(request.query_params.multi_items()))


@router.post("/ui/persons/{person_id}/split")
async def split_confirm(request: Request, person_id: str) -> Response:
    key, form = await require_form(request)
    return await _confirmed(request, key, lambda: _split(person_id, form, key), "Split", (person_id, None),
                            lambda failure: _split_page(request, key, person_id, form, failure))


# -- delete ----------------------------------------------------------------------------------


def _held(conn: Connection, key: SecretKey, person_id: str) -> dict[str, Any] | None:
    """The privacy lookup of the person (what an erasure removes), or None."""
    if not reads.free_of_nul(person_id):
        return None
    found = privacy.lookup(conn, key.project_id, Selector.one_of(person_id=person_id))["persons"]
    return found[0] if found else None


async def _delete_page(request: Request, key: SecretKey, person_id: str, failure: Outcome | None = None) -> Response:
    held = await query(request, key, lambda conn, _: _held(conn, key, person_id))
    if held is None:
        return _not_found(request, key, person_id)
    confirm = Confirm(f"/ui/persons/{person_id}/delete", "Erase this person", f"/ui/persons/{person_id}", danger=True)
    return await _action_page(request, key, "delete.html", f"Delete {held['display_name']}", confirm, None, failure,
                              person=held)


@router.get("/ui/persons/{person_id}/delete")
async def delete_preview(request: Request, person_id: str) -> Response:
    """What erasing the person removes (POST /api/privacy/delete's erasure), with the confirmation."""
    key = await require_key(request)
    return await _delete_page(request, key, person_id)


@router.post("/ui/persons/{person_id}/delete")
async def delete_confirm(request: Request, person_id: str) -> Response:
    key, form = await require_form(request)
    suppress, keep_counts = form.has("suppress"), form.has("keep_anonymised_counts")
    try:
        report = await write(request, lambda context: privacy.erase(
            context.conn, key.project_id, Selector.one_of(person_id=person_id), actor=actor(key), now=context.now(),
            suppress=suppress, keep_anonymised_counts=keep_counts,
        ))
    except RequestError as error:
        return await _delete_page(request, key, person_id, Outcome.failed(error, status_of(error)))
    files = await privacy_routes.forget_erased(request, privacy_routes.ERASURE_WAIT_SECONDS)
    notice = (f"Person erased: {report.distinct_ids} ids, {report.events_deleted + report.events_anonymised} events,"
              f" {report.attributes} attributes, {report.links} link-log entries.")
    if not files["complete"]:
        notice += " Its bytes are still in the store's files until a reader finishes."
    return redirect("/ui/users?" + urlencode({"notice": notice}))
