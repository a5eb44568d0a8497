"""Ingest routes: bytes in, commands to the writer, 200 only after the commit.

These handlers read the raw body once and never go through per-field validation frameworks:
the wire adapters in `idstitch.ingest` do the decoding (style.md "A lean ingest path").
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from idstitch.engine import CommandResult
from idstitch.ingest import native, posthog, segment
from idstitch.ingest.decoding import BodyError, decode_body
from idstitch.ingest.messages import DecodedRequest
from idstitch.ingest.pipeline import ingest_function
from idstitch.server.ratelimit import check_ingest
from idstitch.server.state import AppState
from idstitch.store.transactions import claims_for

router = APIRouter()

POSTHOG_ROUTES = ("/batch", "/capture", "/e", "/i/v0/e", "/track", "/engage")


def _error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"type": "validation_error" if status == 400 else code, "code": code, "detail": detail}, status_code=status)


async def _read(request: Request, state: AppState) -> Any:
    body = await request.body()
    return decode_body(
        body,
        content_type=request.headers.get("content-type", ""),
        content_encoding=request.headers.get("content-encoding", ""),
        compression_hint=request.query_params.get("compression", ""),
        max_bytes=state.config.max_body_bytes,
    )


async def ingest(
    request: Request,
    decode: Callable[[Any, datetime], DecodedRequest],
    answer: Callable[[DecodedRequest, list[CommandResult]], dict[str, Any]],
) -> Response:
    state: AppState = request.app.state.idstitch
    received_at = state.now()
    try:
        payload = await _read(request, state)
        decoded = decode(payload, received_at)
    except BodyError as error:
        return _error(413 if error.too_large else 400, "payload_too_large" if error.too_large else "invalid_payload", str(error))
    except (posthog.EnvelopeError, native.EnvelopeError, segment.EnvelopeError) as error:
        return _error(400, "invalid_payload", str(error))
    count = len(decoded.commands) + len(decoded.rejected)
    if count > state.config.max_batch_events:
        return _error(413, "payload_too_large", f"{count} events in one request; at most {state.config.max_batch_events} are allowed")
    if not decoded.token:
        return _error(401, "authentication_error", "No project token: send `api_key` or `token` in the body")
    project = state.project_for_token(decoded.token)
    if project is None:
        return _error(401, "authentication_error", "Project token is not valid")
    throttled = await check_ingest(request, decoded.token, count)
    if throttled is not None:
        return throttled
    results = await state.writer.write(
        ingest_function(project.id, project.settings, decoded.commands, decoded.rejected),
        keeps_cache=True,
        claims=claims_for(project.id, decoded.commands),
    )
    return JSONResponse(answer(decoded, results))


def _errors(decoded: DecodedRequest) -> list[dict[str, Any]]:
    return [{"index": r.index, "error": r.rejection.reason} for r in decoded.rejected]


def posthog_answer(decoded: DecodedRequest, results: list[CommandResult]) -> dict[str, Any]:
    # Exactly what PostHog's clients expect; per-event errors ride along for humans.
    body: dict[str, Any] = {"status": 1}
    errors = _errors(decoded) + [
        {"index": i, "error": r.rejection.reason} for i, r in zip(decoded.indexes, results) if r.rejection
    ]
    if errors:
        body["errors"] = sorted(errors, key=lambda e: e["index"])
    return body


def _native_answer(decoded: DecodedRequest, results: list[CommandResult]) -> dict[str, Any]:
    answers: list[dict[str, Any]] = [
        {"index": r.index, "status": "rejected", "error": r.rejection.reason} for r in decoded.rejected
    ]
    for index, command, result in zip(decoded.indexes, decoded.commands, results):
        entry: dict[str, Any] = {"index": index, "uuid": command.event.uuid}  # type: ignore[union-attr]
        if result.rejection:
            entry.update(status="rejected", error=result.rejection.reason)
        else:
            entry["status"] = "duplicate" if result.duplicate else "accepted"
        if result.person_id:
            entry["person_id"] = result.person_id
        if result.warnings:
            entry["warnings"] = [w.type.value for w in result.warnings]
        answers.append(entry)
    answers.sort(key=lambda a: a["index"])
    return {
        "status": 1,
        "accepted": sum(1 for a in answers if a["status"] == "accepted"),
        "results": answers,
    }


async def posthog_capture(request: Request) -> Response:
    query_sent_at = request.query_params.get("sent_at") or request.query_params.get("_")
    return await ingest(
        request,
        lambda payload, received_at: posthog.decode_request(payload, received_at, query_sent_at),
        posthog_answer,
    )


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header[:7].lower() == "bearer " else None


async def native_batch(request: Request) -> Response:
    token = _bearer(request)
    return await ingest(request, lambda p, at: native.decode_batch(p, at, token), _native_answer)


def _native_single(message_type: str) -> Callable[[Request], Any]:
    async def handler(request: Request) -> Response:
        token = _bearer(request)
        return await ingest(request, lambda p, at: native.decode_single(p, message_type, at, token), _native_answer)

    handler.__name__ = f"ingest_{message_type}"
    handler.__doc__ = f"Send one `{message_type}` message (see `POST /ingest/batch` for its fields)."
    return handler


for path in POSTHOG_ROUTES:
    # With and without the trailing slash: a redirect would turn the clients' POST into a GET.
    for variant in (path, path + "/"):
        router.add_api_route(variant, posthog_capture, methods=["POST"], include_in_schema=variant == "/batch/", summary="PostHog capture format")

router.add_api_route("/ingest/batch", native_batch, methods=["POST"], summary="idstitch batch of messages", tags=["ingest"])
for message_type in native.MESSAGE_TYPES:
    router.add_api_route(
        f"/ingest/{message_type}", _native_single(message_type), methods=["POST"], summary=f"One {message_type} message", tags=["ingest"]
    )
