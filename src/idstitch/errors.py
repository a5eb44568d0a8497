"""Exceptions, for misuse and bad configuration only (refusals and rejections are values).

    IdstitchError
     ├── RequestError          the caller's to fix (4xx); a store fault never is one
     │    ├── InvalidSetting   a setting's name or value is wrong
     │    ├── InvalidRequest   an API request is malformed (the server answers 400)
     │    ├── NotFound         a person, project or key does not exist (404)
     │    └── Conflict         the request contradicts stored state (409)
     ├── StoreInUse            another server process already serves the SQLite file
     ├── StoreUnavailable      the database cannot take writes now: unreachable, restarting (503)
     │    └── StoreFull        its disk is full (507)
     └── QueriesBusy           every query slot is taken and the queue is full (503)
"""


class IdstitchError(Exception):
    """Base of every error idstitch raises on purpose."""


class RequestError(IdstitchError):
    """What was asked cannot be done as asked; the message tells the caller what to change."""


class InvalidSetting(RequestError):
    """A setting has an unknown name or a value of the wrong kind."""


class InvalidRequest(RequestError):
    """An API request is malformed; the message names the field and the value."""


class NotFound(RequestError):
    """The named person, project or key does not exist."""


class Conflict(RequestError):
    """The request contradicts what is stored, such as importing an id that is already taken."""


class StoreInUse(IdstitchError):
    """Another idstitch server already serves this SQLite file (the message names its pid)."""


class StoreUnavailable(IdstitchError):
    """The database cannot be reached, is restarting, or cannot write; nothing of the request
    was stored and it may be sent again."""


class StoreFull(StoreUnavailable):
    """The database's disk (or its file size limit) is full; writes work again once space is freed."""


class QueriesBusy(IdstitchError):
    """Every query slot is running and the queue is full; the read may be sent again shortly."""
