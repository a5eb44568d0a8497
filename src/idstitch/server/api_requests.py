"""How every `/api` route reads its request: the one edge where API input is decoded.

- The body is JSON whatever `Content-Type` says, as on the ingest routes: `curl -d` sends
  `application/x-www-form-urlencoded`, and the README's examples use it as written.
- JSON is decoded by `json_input.decode_json`: a lone surrogate becomes U+FFFD.
- A query parameter the route does not take is refused, never silently ignored: a typo such as
  `?filtre=` would otherwise answer every row as if it were the wanted subset.
- Every invalid request is a 400 naming each wrong part, not FastAPI's 422:
  `{"detail": "filter.and[1].op: ...", "errors": [{"path": "filter.and[1].op", "reason": "..."}]}`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.types import Receive, Scope

from idstitch.query.filters import FilterError, error_path, error_reason
from idstitch.server.json_input import JsonInputError, decode_json
from idstitch.server.schemas import ApiError

API_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ApiError, "description": "The request is invalid; `errors` lists each path and reason."},
    401: {"description": "No valid secret key."},
    # Documented so that FastAPI does not add its 422, which these routes never answer.
    "4XX": {"description": "Another client error (404, 409, 413, 429), as `{\"detail\": \"...\"}`."},
}


def json_parameter(text: str, name: str) -> Any:
    """The JSON document a query parameter holds; FilterError naming the parameter if it is not JSON."""
    try:
        return decode_json(text)
    except JsonInputError as error:
        raise FilterError([(name, str(error))]) from None


def bad_request(problems: list[tuple[str, str]]) -> JSONResponse:
    return JSONResponse(
        {
            "detail": "; ".join(f"{path}: {reason}" for path, reason in problems),
            "errors": [{"path": path, "reason": reason} for path, reason in problems],
        },
        status_code=400,
    )


class _JsonBodyRequest(Request):
    """The request with its body already decoded, announced to FastAPI as JSON."""

    def __init__(self, scope: Scope, receive: Receive, body: bytes, document: Any) -> None:
        headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
        super().__init__({**scope, "headers": [*headers, (b"content-type", b"application/json")]}, receive)
        self._raw = body
        self._document = document

    async def body(self) -> bytes:
        return self._raw

    async def json(self) -> Any:
        return self._document


class ApiRoute(APIRoute):
    """The route class of every `/api` router (see the module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()
        taken = sorted(_query_parameters(self.dependant))
        reads_body = self.body_field is not None

        async def run(request: Request) -> Response:
            unknown = [name for name in dict.fromkeys(request.query_params.keys()) if name not in taken]
            if unknown:
                accepted = f"it takes {', '.join(taken)}" if taken else "it takes none"
                return bad_request([(name, f"not a query parameter of {self.path} ({accepted})") for name in unknown])
            try:
                if reads_body:
                    request = await _with_json_body(request)
                return await handler(request)
            except RequestValidationError as error:
                return bad_request([(error_path(_strip_source(e["loc"])), error_reason(e)) for e in error.errors()])
            except FilterError as error:
                return bad_request(error.problems)

        return run


async def _with_json_body(request: Request) -> Request:
    body = await request.body()
    if not body.strip():
        return request  # no body: FastAPI's own answer (a required body is "Field required")
    try:
        document = decode_json(body)
    except JsonInputError as error:
        raise FilterError([("body", f"must be a JSON document, whatever its Content-Type; it is {error}")]) from None
    return _JsonBodyRequest(request.scope, request.receive, body, document)


def _query_parameters(dependant: Dependant) -> set[str]:
    names = {field.alias for field in dependant.query_params}
    for dependency in dependant.dependencies:
        names |= _query_parameters(dependency)
    return names


def _strip_source(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    # ("body", "filter", "op") reads filter.op; ("body",) alone, a missing body, reads body.
    return loc[1:] if len(loc) > 1 and loc[0] in ("body", "query", "path") else loc
