"""Routes stock clients call besides the PostHog capture routes: Segment's API and PostHog's stubs.

* Segment (segment-analytics-python, analytics.js, the HTTP Tracking API): `POST /v1/batch`,
  `/v1/import`, `/v1/b`, and one message per request on `/v1/{identify,track,alias,page,group,
  screen}` and their one-letter forms. The write key is our ingest token, sent as the Basic auth
  user or as `writeKey` in the body. Accepted requests get `200 {"success": true}`.
* posthog-js: `/flags`, `/decide` and the remote config `/array/{token}/config(.js)` answered with
  the smallest bodies under which the SDK runs without an error and keeps gzip
  (wire-formats.md §1.9), and session recordings on `/s/` accepted and dropped.

Every status is exactly what the clients need: 200 and nothing else for success (both PostHog
SDKs retry a 201 or 204, sending duplicates), 400 for a bad body, 401 for a bad key.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from idstitch.engine import CommandResult
from idstitch.ingest import segment
from idstitch.ingest.messages import DecodedRequest
from idstitch.server.ingest_routes import ingest, posthog_answer

router = APIRouter()

# posthog-js endpoints answered here (the capture routes are in ingest_routes.py).
POSTHOG_STUB_ROUTES = ("/s", "/flags", "/decide")
SEGMENT_BATCH_ROUTES = ("/v1/batch", "/v1/import", "/v1/b")

SUPPORTED_COMPRESSION = ["gzip", "gzip-js"]

# One body for every era of posthog-js: the v2 `flags` map, the legacy `featureFlags` map, and
# the remote-config keys for the versions where `/flags` doubled as config. An empty `{}` also
# works but logs warnings and, in that era, turns compression off.
FLAGS_BODY: dict[str, Any] = {
    "flags": {},
    "featureFlags": {},
    "featureFlagPayloads": {},
    "errorsWhileComputingFlags": False,
    "supportedCompression": SUPPORTED_COMPRESSION,
    "sessionRecording": False,
    "surveys": False,
    "heatmaps": False,
    "autocapture_opt_out": True,
    "siteApps": [],
    "toolbarParams": {},
    "isAuthenticated": False,
    "config": {"enable_collect_everything": True},
}

# `hasFeatureFlags: false` spares the SDK its first `/flags` call; no `analytics.endpoint` keeps
# events on `/e/`; `supportedCompression` keeps them gzip. No `surveys` key on purpose: posthog-js
# 1.449.2 loads `/static/surveys.js` whenever the key is a boolean, `false` included (it then runs
# the surveys bundle switched off), and that script is not ours to serve. Without the key it only
# notes "Flags not loaded yet. Not loading surveys." in debug mode.
REMOTE_CONFIG: dict[str, Any] = {
    "supportedCompression": SUPPORTED_COMPRESSION,
    "hasFeatureFlags": False,
    "sessionRecording": False,
    "heatmaps": False,
    "autocapture_opt_out": True,
    "siteApps": [],
    "toolbarParams": {},
    "isAuthenticated": False,
}


# -- PostHog stubs --------------------------------------------------------------------------


async def session_recording(request: Request) -> Response:
    """`/s/`: session recordings are not idstitch's business; accept them so the SDK moves on."""
    return JSONResponse({"status": 1})


async def flags(request: Request) -> Response:
    """`/flags/?v=2` and `/decide/`: no feature flags, nothing switched on."""
    return JSONResponse(FLAGS_BODY)


async def remote_config(token: str) -> Response:
    """posthog-js remote config as JSON (its fallback when the script gave nothing)."""
    return JSONResponse(REMOTE_CONFIG)


async def remote_config_script(token: str) -> Response:
    """posthog-js remote config as the script it loads with `crossorigin="anonymous"`."""
    config = json.dumps({"config": REMOTE_CONFIG, "siteApps": []})
    script = (
        "window._POSTHOG_REMOTE_CONFIG = window._POSTHOG_REMOTE_CONFIG || {};\n"
        f"window._POSTHOG_REMOTE_CONFIG[{json.dumps(token)}] = {config};\n"
    )
    return Response(script, media_type="application/javascript")


for stub in POSTHOG_STUB_ROUTES:
    handler = session_recording if stub == "/s" else flags
    for variant in (stub, stub + "/"):
        router.add_api_route(variant, handler, methods=["GET", "POST"], include_in_schema=False)
router.add_api_route("/array/{token}/config", remote_config, methods=["GET"], include_in_schema=False)
router.add_api_route("/array/{token}/config.js", remote_config_script, methods=["GET"], include_in_schema=False)


# -- Segment --------------------------------------------------------------------------------


def write_key(request: Request) -> str | None:
    """The write key of `Authorization: Basic base64("<write key>:")`, if the request has one."""
    header = request.headers.get("authorization", "")
    if header[:6].lower() != "basic ":
        return None
    try:
        user, _, _password = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user or None


def _segment_answer(decoded: DecodedRequest, results: list[CommandResult]) -> dict[str, Any]:
    # The clients only look at the status; per-event errors ride along for humans.
    body = posthog_answer(decoded, results)
    del body["status"]
    return {"success": True, **body}


def _segment_error(response: Response) -> Response:
    """Errors in Segment's shape: the Python client reads `code` and `message`."""
    if response.status_code == 200:
        return response
    body = json.loads(bytes(response.body))
    message = body["detail"]
    if response.status_code == 401 and message.startswith("No project token"):
        message = "No write key: send the ingest token as the Basic auth user or as `writeKey` in the body"
    return JSONResponse({**body, "detail": message, "message": message}, status_code=response.status_code)


async def segment_batch(request: Request) -> Response:
    """A Segment batch (`/v1/batch`): `{"batch": [message, ...], "sentAt", "writeKey"}`."""
    key = write_key(request)
    response = await ingest(request, lambda p, at: segment.decode_batch(p, at, key), _segment_answer)
    return _segment_error(response)


def _segment_single(message_type: str) -> Callable[[Request], Any]:
    async def handler(request: Request) -> Response:
        key = write_key(request)
        response = await ingest(
            request, lambda p, at: segment.decode_single(p, message_type, at, key), _segment_answer
        )
        return _segment_error(response)

    handler.__name__ = f"segment_{message_type}"
    handler.__doc__ = f"One Segment `{message_type}` message."
    return handler


for path in SEGMENT_BATCH_ROUTES:
    for variant in (path, path + "/"):
        router.add_api_route(
            variant, segment_batch, methods=["POST"], include_in_schema=variant == "/v1/batch",
            summary="Segment batch format", tags=["ingest"],
        )
for letter, message_type in segment.SHORT_TYPES.items():
    single = _segment_single(message_type)
    for path in (f"/v1/{message_type}", f"/v1/{letter}"):
        for variant in (path, path + "/"):
            router.add_api_route(variant, single, methods=["POST"], include_in_schema=False)
