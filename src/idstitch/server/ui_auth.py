"""Signing in to the web UI, and what every UI response carries.

- Sign in with a secret key; the browser gets a random sign-in token in an HttpOnly, SameSite=Lax
  cookie scoped to `/ui` (Secure over https). Only its hash is stored (`store/signins.py`).
- Every form POST carries a CSRF token, derived from the sign-in token with HMAC, so it needs no
  storage and a page of another origin cannot know it. The sign-in form itself uses a
  double-submit cookie. A POST whose `Origin` names another site is refused as well.
- Every UI response gets a strict Content-Security-Policy (scripts and styles only from this
  server, avatars from anywhere), no framing, no caching, and never any CORS header.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute

from idstitch.server.state import AppState
from idstitch.server.ui_forms import Form, FormError
from idstitch.store import signins
from idstitch.store.projects import SecretKey
from idstitch.web.pages import render

SIGNIN_COOKIE = "idstitch_ui"
LOGIN_COOKIE = "idstitch_ui_login"
COOKIE_PATH = "/ui"
CSRF_FIELD = "csrf_token"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' https: http: data:;"
        " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Same-origin form posts keep their Origin header; avatar hosts learn nothing of our URLs.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Refusal(Exception):
    """Answer with `response` instead of the page (sign in first, or a forged form)."""

    def __init__(self, response: Response) -> None:
        self.response = response


class UIRoute(APIRoute):
    """Turns a Refusal into its response and adds the security headers to every answer."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                response = await handler(request)
            except Refusal as refusal:
                response = refusal.response
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return run


def state_of(request: Request) -> AppState:
    return request.app.state.idstitch


def csrf_token(signin_token: str) -> str:
    return hmac.new(signin_token.encode(), b"idstitch-ui-csrf", hashlib.sha256).hexdigest()


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path=COOKIE_PATH, httponly=True, samesite="lax", secure=_secure(request)
    )


def clear_cookie(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(name, path=COOKIE_PATH, httponly=True, samesite="lax", secure=_secure(request))


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path under /ui only (never another site)."""
    if not target or not target.startswith("/ui/") or target.startswith("//") or "\\" in target:
        return "/ui/users"
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else "/ui/users"


def to_login(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    target = here if request.method == "GET" else request.url.path
    return RedirectResponse(f"/ui/login?next={quote(target, safe='')}", status_code=303)


async def signed_in(request: Request) -> SecretKey | None:
    token = request.cookies.get(SIGNIN_COOKIE)
    if not token or len(token) > 200:
        return None
    state = state_of(request)
    now = state.now()
    return await run_in_threadpool(lambda: signins.key_for_signin(state.reader(), token, now))


async def require_key(request: Request) -> SecretKey:
    """The signed-in key, or a Refusal that redirects to the sign-in page."""
    key = await signed_in(request)
    if key is None:
        raise Refusal(to_login(request))
    return key


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        return True  # older browsers and non-browser clients; the CSRF token still decides
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def forbidden(message: str) -> HTMLResponse:
    return render("error.html", {"title": "Refused", "message": message, "key": None}, status_code=403)


async def read_form(request: Request) -> Form:
    try:
        return Form.parse(await request.body())
    except FormError as error:
        raise Refusal(forbidden(f"This form could not be read: {error}.")) from None


async def require_form(request: Request) -> tuple[SecretKey, Form]:
    """A signed-in key and its form, with the CSRF token checked (Refusal otherwise)."""
    key = await require_key(request)
    form = await read_form(request)
    token = request.cookies.get(SIGNIN_COOKIE, "")
    if not _same_origin(request) or not hmac.compare_digest(form.get(CSRF_FIELD), csrf_token(token)):
        raise Refusal(forbidden(
            "This form was not sent from an idstitch page you are signed in to (its security token is"
            " missing or out of date). Go back, reload the page and try again."
        ))
    return key, form


def login_nonce() -> str:
    return secrets.token_urlsafe(24)


def check_login_form(request: Request, form: Form) -> bool:
    """The sign-in form's double-submit check: the hidden field equals the cookie."""
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    return bool(cookie) and _same_origin(request) and hmac.compare_digest(form.get(CSRF_FIELD), cookie)
