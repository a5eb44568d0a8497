"""What every UI page does: render a template inside the layout, run its reads on the thread's
read-only connection (with a filter compiler, as the query API does), and send writes to the
one writer."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse

from idstitch.commands import Actor
from idstitch.ingest.pipeline import WriteContext
from idstitch.query.compiler import Compiler, run_guarded
from idstitch.query.filters import FilterError
from idstitch.query.moments import parse_moment
from idstitch.server.ui_auth import CSRF_FIELD, SIGNIN_COOKIE, csrf_token, state_of
from idstitch.store.connection import Connection
from idstitch.store.projects import SecretKey
from idstitch.web.pages import render

T = TypeVar("T")

PAGE_SIZE = 50


def page(request: Request, key: SecretKey | None, template: str, nav: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """`template` rendered with the layout's context: the signed-in key, its CSRF token, the
    active navigation entry, the stylesheet's URL and a notice from the query string."""
    token = request.cookies.get(SIGNIN_COOKIE, "")
    base = {
        "key": key,
        "csrf": csrf_token(token) if key else "",
        "csrf_field": CSRF_FIELD,
        "nav": nav,
        "notice": request.query_params.get("notice", "")[:200],
        "error": None,
        "request_query": lambda **changes: query_string(request, **changes),
    }
    return render(template, {**base, **context}, status_code=status_code)


def query_string(request: Request, **changes: str | None) -> str:
    """This page's query string with some parameters replaced (None removes one), for pager links."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in changes and k != "notice"]
    return urlencode(kept + [(k, v) for k, v in changes.items() if v is not None])


def message_page(request: Request, key: SecretKey | None, status_code: int, title: str, message: str) -> HTMLResponse:
    return page(request, key, "error.html", "", status_code=status_code, title=title, message=message)


async def query(request: Request, key: SecretKey, fn: Callable[[Connection, Compiler], T]) -> T:
    """Run `fn` in a query slot (server/query_slots.py) with a compiler for the key's project and
    the regex time budget (query_routes does the same for the API)."""
    state = state_of(request)
    now = state.now()
    return await state.slots.run(lambda conn: run_guarded(conn, key.project_id, now, fn))


async def write(request: Request, fn: Callable[[WriteContext], T]) -> T:
    return await state_of(request).writer.write(fn)


def problems(error: Exception) -> str:
    """An error as one line; a filter's problems each with their path."""
    if isinstance(error, FilterError):
        return "; ".join(f"{path}: {reason}" for path, reason in error.problems)
    return str(error)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def positive_id(text: str) -> int | None:
    """A row id typed in a URL (a segment, a key), or None when it is not a positive whole number."""
    return int(text) if text.isdigit() and 0 < int(text) < 2**62 else None


def moment(text: str, path: str, now: datetime) -> datetime | None:
    """A typed time (ISO-8601 or relative, like `-7d`), None when empty; FilterError naming `path`."""
    if not text:
        return None
    try:
        return parse_moment(text, now)
    except ValueError as error:
        raise FilterError([(path, str(error))]) from None


def flag(text: str) -> bool | None:
    """`yes` / `no` from a select, or None for "any"."""
    return {"yes": True, "no": False}.get(text)


def admin(key: SecretKey) -> Actor:
    """Who an identity action names: the signed-in key, as the API names it."""
    return Actor("admin", key.id)


def actor(key: SecretKey) -> str:
    """How the audit log names the key (the API's `admin:<key id>`)."""
    return str(admin(key))
