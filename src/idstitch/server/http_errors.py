"""Errors into HTTP answers, the same for every API route (style.md "Translate errors at the edge")."""

from __future__ import annotations

from fastapi import HTTPException

from idstitch.errors import Conflict, IdstitchError, NotFound, QueriesBusy, StoreUnavailable

_STATUS: dict[type[IdstitchError], int] = {NotFound: 404, Conflict: 409}


def http_error(error: IdstitchError) -> Exception:
    """What to raise for `error`: 404 or 409 where it says so, else 400 (the request is wrong);
    a store that cannot take writes, or reads past the query slots, stay themselves, for the
    app's 503/507 with `Retry-After` (server/app.py): they are not the request's fault."""
    if isinstance(error, (StoreUnavailable, QueriesBusy)):
        return error
    return HTTPException(status_of(error), str(error))


def status_of(error: IdstitchError) -> int:
    """The 4xx status of an error that is the request's fault: 404, 409 or 400."""
    return _STATUS.get(type(error), 400)
