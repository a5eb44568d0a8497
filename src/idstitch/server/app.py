"""The ASGI app: ingest routes, the read/admin API and its OpenAPI document at `/openapi.json`."""

from __future__ import annotations

import asyncio
import html
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

import idstitch
from idstitch.analytics.choice import open_engine
from idstitch.analytics.feeder import Feeder
from idstitch.clock import Now, utc_now
from idstitch.errors import QueriesBusy, StoreFull, StoreUnavailable
from idstitch.ingest.pipeline import Writer
from idstitch.retention import expire_periodically, retention_days
from idstitch.server import (
    api_routes,
    compat_routes,
    identity_routes,
    ingest_routes,
    privacy_routes,
    query_routes,
    static_routes,
    ui_routes,
)
from idstitch.server.body_limit import BodyLimitMiddleware
from idstitch.server.cors import IngestCORSMiddleware
from idstitch.server.docs_routes import add_api_docs
from idstitch.server.ratelimit import ApiRateLimitMiddleware, RateLimits
from idstitch.server.state import AppState, ServerConfig
from idstitch.store.backends import Store
from idstitch.store.projects import DefaultProject, ensure_default_project


def prepare(config: ServerConfig, now: Now = utc_now) -> DefaultProject:
    """Create the database (or migrate it) and the default project if they are missing."""
    store = config.store()
    store.prepare()
    conn = store.connect()
    try:
        return ensure_default_project(
            conn, now(), ingest_token=config.ingest_token, secret_key=config.secret_key
        )
    finally:
        conn.close()


def start_analytics(config: ServerConfig, store: Store, now: Now) -> Feeder | None:
    """The analytics engine the config names, prepared, with its feeder running (or None)."""
    engine = open_engine(config.analytics, config.data_dir, shared_store=store.several_servers)
    if engine is None:
        return None
    engine.prepare()
    feeder = Feeder(lambda: store.connect(read_only=True), engine, now=now, retention_days=lambda: retention_days(store))
    feeder.start()
    return feeder


def create_app(config: ServerConfig, now: Now = utc_now, given: Store | None = None) -> FastAPI:
    """The app on `config`'s store (or on the store `given`, when the caller claimed it already)."""
    store = given or config.store()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store.claim_for_server()
        try:
            prepare(config, now)
            writer = Writer(store.write_session(now), now)
            analytics = start_analytics(config, store, now)
            state = app.state.idstitch = AppState(config, store, writer, now, analytics)
            expiry = asyncio.create_task(expire_periodically(writer, store))
            try:
                yield
            finally:
                expiry.cancel()
                await asyncio.gather(expiry, return_exceptions=True)
                if analytics is not None:
                    analytics.stop()
                writer.close()
                state.close()
                if analytics is not None:
                    analytics.engine.close()
        finally:
            store.release()

    app = FastAPI(
        title="idstitch",
        version=idstitch.__version__,
        description="Identity resolution and user attributes for product analytics.",
        lifespan=lifespan,
        docs_url=None,  # served by docs_routes, from the package instead of a CDN
        redoc_url=None,
    )
    add_api_docs(app)
    app.include_router(ingest_routes.router)
    app.include_router(api_routes.router)
    app.include_router(identity_routes.router)
    app.include_router(static_routes.router)
    app.include_router(compat_routes.router)
    # Inside CORS, so that a browser can read the 413.
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes)
    app.add_middleware(IngestCORSMiddleware)
    app.include_router(privacy_routes.router)
    app.include_router(query_routes.router)
    app.include_router(ui_routes.router)
    app.state.rate_limits = RateLimits.per_second(
        config.ingest_rate_limit, config.api_rate_limit, shared=store.shared_rate_buckets()
    )
    app.add_middleware(ApiRateLimitMiddleware, limiter=app.state.rate_limits.api)

    # Nothing of the request was done (or stored): clients, PostHog's included, send it again.
    for error_type, code, status, wait in (
        (StoreUnavailable, "store_unavailable", 503, 1),
        (StoreFull, "store_full", 507, 10),
        (QueriesBusy, "queries_busy", 503, 1),
    ):
        app.add_exception_handler(error_type, _retry_later(code, status, wait))

    @app.get("/_health", include_in_schema=False)
    async def health(request: Request) -> JSONResponse:
        """200 while this server can take writes; 503 once its writer has stopped (restart it)."""
        writer: Writer = request.app.state.idstitch.writer
        if writer.stopped is not None:
            return JSONResponse({"status": "writer_stopped", "detail": str(writer.stopped)}, status_code=503)
        return JSONResponse({"status": "ok"})

    return app


def _retry_later(code: str, status: int, wait: int) -> Callable[[Request, Exception], Awaitable[Response]]:
    """An answer with Retry-After (`wait` seconds) whose body names `code` and says why: a page
    for the UI's browser, JSON for everyone else."""

    async def answer(request: Request, error: Exception) -> Response:
        headers = {"Retry-After": str(wait)}
        if request.url.path.startswith("/ui"):
            page = f"<!doctype html><title>Try again</title><p>{html.escape(str(error))}</p><p>Try again in {wait} s.</p>"
            return HTMLResponse(page, status_code=status, headers=headers)
        return JSONResponse({"type": "server_error", "code": code, "detail": str(error)}, status_code=status, headers=headers)

    return answer
