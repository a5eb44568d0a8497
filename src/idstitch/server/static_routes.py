"""The browser SDK at a stable URL: `GET /static/idstitch.js`.

The file is built from `sdk/js/src` by `node sdk/js/build.mjs` and shipped inside the package
(`idstitch/web/static/idstitch.js`); `tests/sdk/test_sdk_unit.py` fails when it is out of date.
Pages on any origin load it, so it carries `Access-Control-Allow-Origin: *` (a `crossorigin`
script tag or subresource integrity then work) and `Cross-Origin-Resource-Policy: cross-origin`.
The URL never changes between versions, so browsers keep it an hour and revalidate with its
ETag; it is sent gzipped (compressed once, when first asked for) to clients that accept it.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import Response

router = APIRouter()

SDK_RESOURCE = ("web", "static", "idstitch.js")
MEDIA_TYPE = "text/javascript; charset=utf-8"
CACHE_CONTROL = "public, max-age=3600, stale-while-revalidate=86400"


@dataclass(frozen=True, slots=True)
class Asset:
    """One static file held in memory, plain and gzipped, with an ETag for each form."""

    body: bytes
    gzipped: bytes
    etag: str

    @property
    def gzip_etag(self) -> str:
        return self.etag[:-1] + '-gzip"'


@cache
def sdk_asset() -> Asset:
    body = resources.files("idstitch").joinpath(*SDK_RESOURCE).read_bytes()
    # mtime=0: the same bytes (and so the same ETag) from every server process.
    gzipped = gzip.compress(body, compresslevel=9, mtime=0)
    return Asset(body, gzipped, f'"{hashlib.sha256(body).hexdigest()[:32]}"')


def _accepts_gzip(accept_encoding: str) -> bool:
    for part in accept_encoding.lower().split(","):
        name, _, params = part.strip().partition(";")
        if name.strip() in ("gzip", "*"):
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def _matches(if_none_match: str, etags: tuple[str, ...]) -> bool:
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or any(tag in tags for tag in etags)


@router.get(
    "/static/idstitch.js",
    summary="The idstitch browser SDK",
    tags=["sdk"],
    response_class=Response,
    responses={200: {"content": {"text/javascript": {}}, "description": "The minified SDK."}},
)
async def idstitch_js(request: Request) -> Response:
    """The browser SDK, built from `sdk/js`; load it with the snippet of the README."""
    asset = sdk_asset()
    compressed = _accepts_gzip(request.headers.get("accept-encoding", ""))
    headers = {
        "Cache-Control": CACHE_CONTROL,
        "ETag": asset.gzip_etag if compressed else asset.etag,
        "Vary": "Accept-Encoding",
        "Access-Control-Allow-Origin": "*",
        "Cross-Origin-Resource-Policy": "cross-origin",
        "X-Content-Type-Options": "nosniff",
    }
    if _matches(request.headers.get("if-none-match", ""), (asset.etag, asset.gzip_etag)):
        return Response(status_code=304, headers=headers)
    if compressed:
        headers["Content-Encoding"] = "gzip"
    return Response(asset.gzipped if compressed else asset.body, media_type=MEDIA_TYPE, headers=headers)


router.add_api_route("/static/idstitch.js", idstitch_js, methods=["HEAD"], include_in_schema=False)
