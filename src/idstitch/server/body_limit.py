"""The cap on request bodies (`max_body_bytes`), for every route, enforced while the body arrives.

A `Content-Length` over the cap is answered 413 at once: the app does not run and no byte of the
body is read (a client that waits on `Expect: 100-continue` sends none). A chunked body is
counted as its chunks arrive; past the cap the answer is the same 413, the app sees the client
go away, and nothing more is read. So a request never holds more than the cap in memory.

The ingest routes check the cap again after decompression (ingest/decoding.py).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def too_large(max_bytes: int) -> JSONResponse:
    detail = f"body is larger than {max_bytes} bytes"
    # `message` as well as `detail`: Segment's clients read `code` and `message`.
    body = {"type": "payload_too_large", "code": "payload_too_large", "detail": detail, "message": detail}
    return JSONResponse(body, status_code=413, headers={"Connection": "close"})


def declared_length(scope: Scope) -> int | None:
    """The request's `Content-Length`, if it has one (the server refuses malformed ones)."""
    value = Headers(scope=scope).get("content-length")
    return int(value) if value is not None and value.strip().isdigit() else None


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = declared_length(scope)
        if length is not None and length > self.max_bytes:
            await too_large(self.max_bytes)(scope, receive, send)
            return
        received = 0
        refused = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    if not started:
                        await too_large(self.max_bytes)(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the app's answer to a body it never got whole: the 413 went instead
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except Exception:
            # Past the cap the app fails on the "disconnect" it was handed (ClientDisconnect).
            if not refused:
                raise
