"""Interactive API docs at `/docs`, with Swagger UI served by this server, not from a CDN.

FastAPI's default page loads Swagger UI's script, stylesheet and icon from other hosts, so it is
blank on a server without internet access (and tells those hosts who reads the docs). The files
come from the pinned `swagger-ui-bundle-v2` wheel (Swagger UI, Apache-2.0; the wheel's files are
the upstream `swagger-ui-dist` build) and are served under `/docs/assets/`. Swagger UI's online
validator badge, another outside request, is turned off.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

ASSETS = "/docs/assets"


def add_api_docs(app: FastAPI) -> None:
    """`GET /docs` and its assets; the app must be made with `docs_url=None, redoc_url=None`."""
    app.mount(ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    async def api_docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None},
        )
