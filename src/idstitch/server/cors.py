"""CORS for the ingest routes only: web pages on any origin send events; nobody reads with them.

Browsers running posthog-js or analytics.js post from the site's own origin. Following PostHog's
capture service, every ingest response (errors and the `config.js` script included) echoes the
request's `Origin` with `Access-Control-Allow-Credentials: true` (`*` would break credentialed XHR
of older posthog-js), and a preflight `OPTIONS` is answered here, echoing the headers it asks for
(`content-type` for JSON bodies, plus any custom `request_headers` of the SDK). Without these the
request still arrives but the SDK sees status 0 and retries it (wire-formats.md §4.8).

The `/api/*` routes hold secret keys and get no CORS headers at all: a page on another origin
must not be able to read them with a visitor's browser.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from idstitch.server import compat_routes, ingest_routes

ALLOW_METHODS = "GET, POST, OPTIONS"
PREFLIGHT_MAX_AGE = "600"

_INGEST_PATHS = frozenset({*ingest_routes.POSTHOG_ROUTES, *compat_routes.POSTHOG_STUB_ROUTES})
_INGEST_PREFIXES = ("/ingest/", "/v1/", "/array/")


def is_ingest_path(path: str) -> bool:
    """Whether `path` is one of the public ingest routes (with or without its trailing slash)."""
    return (path.rstrip("/") or "/") in _INGEST_PATHS or path.startswith(_INGEST_PREFIXES)


def cors_headers(request_headers: Headers) -> dict[str, str]:
    """The headers every ingest response carries for a cross-origin request (none without `Origin`)."""
    origin = request_headers.get("origin")
    if origin is None:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true"}


def preflight_headers(request_headers: Headers) -> dict[str, str]:
    """The answer to `OPTIONS`: any method we route, and whatever headers the browser asks for."""
    headers = {
        **cors_headers(request_headers),
        "Allow": ALLOW_METHODS,
        "Access-Control-Allow-Methods": ALLOW_METHODS,
        "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
        "Vary": "Origin, Access-Control-Request-Headers",
    }
    requested = request_headers.get("access-control-request-headers")
    if requested:
        headers["Access-Control-Allow-Headers"] = requested
    # Chrome's Private Network Access: a public site posting to a self-hosted idstitch on an
    # intranet address asks first. The ingest routes only take data, so the answer is yes.
    if request_headers.get("access-control-request-private-network") == "true":
        headers["Access-Control-Allow-Private-Network"] = "true"
    return headers


class IngestCORSMiddleware:
    """Adds CORS headers to the ingest routes and answers their preflights; other paths untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_ingest_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        request_headers = Headers(scope=scope)
        if scope["method"] == "OPTIONS":
            await Response(status_code=200, headers=preflight_headers(request_headers))(scope, receive, send)
            return
        extra = cors_headers(request_headers)
        if not extra:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.update(extra)
                headers.add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, send_with_cors)
