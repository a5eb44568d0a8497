"""The Python client: send events from your server, and read or administer over the API.

    >>> import idstitch
    >>> client = idstitch.Client("http://127.0.0.1:8000", ingest_token="phc_...", secret_key="sk_...")
    >>> sent = client.track("cookie-1", "Viewed pricing", {"plan": "pro"}, session_id="s-1")
    >>> sent = client.identify("user-42", anonymous_id="cookie-1", set={"email": "ada@example.com"})
    >>> client.flush()
    True
    >>> client.person("cookie-1")["user_ids"]
    ['user-42']

Sending (`track`, `identify`, `alias`, `set_attributes`) never blocks the caller: messages go to
a bounded queue and a background thread posts them in batches to `/ingest/batch` with the
ingest token. A full queue drops the message with a warning (the call returns None). Network
errors, 429 and 5xx answers are retried with exponential back-off; every message carries a uuid
and a timestamp made here, so a retried batch is stored once and keeps its place among later
writes (each attempt sends its own `sent_at`). `flush()` waits for what was queued, `shutdown()`
flushes and stops the thread, and both run at interpreter exit.

Everything else (`merge`, `update_attributes`, `person`, `lookup`, `persons`, `sessions`,
`events`, `count`, segments) is a synchronous call with the secret key; an error answer raises
`ApiError` with the status, the server's message and, for a bad filter, each path and reason.

This module imports nothing from the server or the store, only httpx.
"""

from __future__ import annotations

import atexit
import logging
import queue
import random
import threading
import time
import uuid as uuid_module
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from typing import Any

import httpx

__all__ = ["ApiError", "Client", "ClientError"]

log = logging.getLogger("idstitch.client")

_OPERATIONS = ("set", "set_once", "unset", "add", "append", "union", "remove")
_FLUSH = object()
_STOP = object()


class ClientError(Exception):
    """Misuse of the client, such as an admin call without a secret key."""


class ApiError(ClientError):
    """The server answered an API call with an error.

    `status_code` is the HTTP status, `detail` the server's message and `errors` the list of
    `{"path", "reason"}` of a 400 (a bad filter names each wrong part)."""

    def __init__(self, status_code: int, detail: str, errors: list[dict[str, str]] | None = None) -> None:
        self.status_code = status_code
        self.detail = detail
        self.errors = errors or []
        super().__init__(f"{status_code}: {detail}")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _time(value: datetime | str | None) -> str:
    if value is None:
        return _now()
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    return value


class Client:
    """One project on one idstitch server.

    `ingest_token` sends events; `secret_key` reads and administers (either may be omitted if
    you only do the other). Batching: up to `flush_at` messages per request, at least every
    `flush_interval` seconds; at most `max_queue_size` messages wait. A failed request is tried
    `max_retries` more times, waiting `backoff * 2**n` seconds (at most `max_backoff`, or the
    server's `Retry-After`). `transport` is an httpx transport, for tests and proxies.
    """

    def __init__(
        self,
        url: str,
        ingest_token: str | None = None,
        secret_key: str | None = None,
        *,
        flush_at: int = 100,
        flush_interval: float = 0.5,
        max_queue_size: int = 10_000,
        max_retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        timeout: float = 10.0,
        shutdown_timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        assert flush_at >= 1, f"flush_at must be at least 1, got {flush_at}"
        assert max_queue_size >= 1, f"max_queue_size must be at least 1, got {max_queue_size}"
        self.url = url.rstrip("/")
        self.ingest_token = ingest_token
        self.secret_key = secret_key
        self.flush_at = flush_at
        self.flush_interval = flush_interval
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.shutdown_timeout = shutdown_timeout
        self.dropped = 0
        self._queue: queue.Queue[Any] = queue.Queue(max_queue_size)
        self._sender = httpx.Client(base_url=self.url, timeout=timeout, transport=transport)
        self._api = httpx.Client(base_url=self.url, timeout=timeout, transport=transport)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        atexit.register(self._at_exit)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- sending (queued, ingest token) ------------------------------------------------------------

    def track(
        self,
        distinct_id: str,
        event: str,
        properties: Mapping[str, Any] | None = None,
        *,
        timestamp: datetime | str | None = None,
        session_id: str | None = None,
        uuid: str | None = None,
        **operations: Any,
    ) -> str | None:
        """Queue an event; `operations` are attribute operations (set=..., add=...). Returns the
        event's uuid, or None if the queue was full and the event was dropped."""
        message = {"type": "track", "distinct_id": distinct_id, "event": event, "properties": dict(properties or {})}
        return self._enqueue(message, timestamp, session_id, uuid, operations)

    def identify(
        self,
        user_id: str | None,
        anonymous_id: str | None = None,
        *,
        timestamp: datetime | str | None = None,
        session_id: str | None = None,
        uuid: str | None = None,
        **operations: Any,
    ) -> str | None:
        """Queue `identify(user_id)`: joins `anonymous_id`'s history to the user. With `user_id`
        None, `operations` only set attributes on the anonymous visitor (Hotjar's identify(null))."""
        message = {"type": "identify", "user_id": user_id, "anonymous_id": anonymous_id}
        return self._enqueue(message, timestamp, session_id, uuid, operations)

    def alias(
        self, distinct_id: str, alias: str, *, timestamp: datetime | str | None = None, uuid: str | None = None
    ) -> str | None:
        """Queue an alias: `alias` becomes another id of `distinct_id`'s person."""
        return self._enqueue({"type": "alias", "distinct_id": distinct_id, "alias": alias}, timestamp, None, uuid, {})

    def set_attributes(
        self,
        distinct_id: str,
        *,
        timestamp: datetime | str | None = None,
        uuid: str | None = None,
        **operations: Any,
    ) -> str | None:
        """Queue attribute operations for `distinct_id`: set, set_once, unset (a list of keys),
        add, append, union, remove. Creates the person if needed (ingest's rules)."""
        if not operations:
            raise ClientError(f"set_attributes needs at least one of {', '.join(_OPERATIONS)}")
        return self._enqueue({"type": "attributes", "distinct_id": distinct_id}, timestamp, None, uuid, operations)

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued so far; True once it was sent (or given up on), False on timeout."""
        if self._thread is None:
            return True
        try:
            self._queue.put_nowait(_FLUSH)
        except queue.Full:
            pass  # the thread is busy sending; it will get to the end of the queue
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True

    def shutdown(self, timeout: float | None = None) -> None:
        """Flush, stop the background thread and close connections; later sends are dropped."""
        timeout = self.shutdown_timeout if timeout is None else timeout
        with self._lock:
            if self._closed:
                return
            self._closed = True
        start = time.monotonic()
        if not self.flush(timeout):
            log.warning("idstitch: %d messages were not sent within %.1f s of shutdown", self._queue.unfinished_tasks, timeout)
        if self._thread is not None:
            try:
                self._queue.put(_STOP, timeout=max(0.0, timeout - (time.monotonic() - start)))
            except queue.Full:
                pass
            self._thread.join(max(0.0, timeout - (time.monotonic() - start)))
        self._sender.close()
        self._api.close()
        atexit.unregister(self._at_exit)

    def _at_exit(self) -> None:
        self.shutdown()

    def _enqueue(
        self,
        message: dict[str, Any],
        timestamp: datetime | str | None,
        session_id: str | None,
        uuid: str | None,
        operations: Mapping[str, Any],
    ) -> str | None:
        unknown = set(operations) - set(_OPERATIONS)
        if unknown:
            raise ClientError(f"unknown attribute operations {sorted(unknown)}; use {', '.join(_OPERATIONS)}")
        message["uuid"] = uuid or str(uuid_module.uuid4())
        message["timestamp"] = _time(timestamp)
        if session_id is not None:
            message["session_id"] = session_id
        message.update({name: value for name, value in operations.items() if value is not None})
        if self._closed:
            self._drop(message, "the client was shut down")
            return None
        if self.ingest_token is None:
            raise ClientError("sending events needs an ingest token: Client(url, ingest_token=...)")
        self._start()
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            self._drop(message, f"the queue is full ({self._queue.maxsize} messages)")
            return None
        return message["uuid"]

    def _drop(self, message: dict[str, Any], why: str) -> None:
        self.dropped += 1
        log.warning("idstitch: dropped %s message %s: %s", message["type"], message["uuid"], why)

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="idstitch-client", daemon=True)
                self._thread.start()

    # -- the background thread ---------------------------------------------------------------------

    def _run(self) -> None:
        batch: list[dict[str, Any]] = []
        markers = 0  # flush markers taken with the batch, marked done once it is sent
        deadline = 0.0
        while True:
            wait = None if not batch else max(0.0, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                item = None
            stop = item is _STOP
            if item is _FLUSH or stop:
                markers += 1
            elif item is not None:
                if not batch:
                    deadline = time.monotonic() + self.flush_interval
                batch.append(item)
            due = item is None or item is _FLUSH or stop or len(batch) >= self.flush_at
            if due and batch:
                self._send(batch)
            if due:
                for _ in range(len(batch) + markers):
                    self._queue.task_done()
                batch, markers = [], 0
            if stop:
                return

    def _send(self, batch: list[dict[str, Any]]) -> None:
        def post() -> httpx.Response:
            # `sent_at` is the time of this attempt: the server corrects clock skew by
            # `received_at - sent_at`, and a retry that kept the first attempt's `sent_at` would
            # move its events later by the whole wait, past writes made after them.
            body = {"token": self.ingest_token, "sent_at": _now(), "batch": batch}
            return self._sender.post("/ingest/batch", json=body)

        response = self._with_retries(post, f"a batch of {len(batch)}")
        if response is None:
            self.dropped += len(batch)
            return
        if response.status_code != 200:
            self.dropped += len(batch)
            log.error("idstitch: the server refused a batch of %d (%d): %s", len(batch), response.status_code, response.text[:500])
            return
        for result in response.json().get("results", []):
            if result.get("status") == "rejected":
                log.warning("idstitch: message %s was rejected: %s", result.get("uuid", result.get("index")), result.get("error"))

    def _with_retries(self, call: Any, what: str) -> httpx.Response | None:
        """The answer of `call`, retried on network errors, 429 and 5xx; None when it gave up."""
        for attempt in range(self.max_retries + 1):
            try:
                response = call()
            except httpx.TransportError as error:
                reason, retry_after = f"{type(error).__name__}: {error}", None
            else:
                if response.status_code != 429 and response.status_code < 500:
                    return response
                reason, retry_after = f"HTTP {response.status_code}", response.headers.get("retry-after")
            if attempt == self.max_retries:
                log.error("idstitch: gave up sending %s after %d tries (%s)", what, attempt + 1, reason)
                return None
            delay = min(self.max_backoff, self.backoff * 2**attempt) * (0.5 + random.random() / 2)
            if retry_after is not None:
                try:
                    delay = min(self.max_backoff, float(retry_after))
                except ValueError:
                    pass
            log.info("idstitch: retrying %s in %.2f s (%s)", what, delay, reason)
            time.sleep(delay)
        return None  # pragma: no cover

    # -- the API (synchronous, secret key) ---------------------------------------------------------

    def _call(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
              retry: bool = False) -> Any:
        if self.secret_key is None:
            raise ClientError(f"{method} {path} needs a secret key: Client(url, secret_key=...)")
        headers = {"Authorization": f"Bearer {self.secret_key}"}
        query = {k: v for k, v in (params or {}).items() if v is not None}

        def send() -> httpx.Response:
            return self._api.request(method, path, json=json, params=query, headers=headers)

        if retry:
            response = self._with_retries(send, f"{method} {path}")
            if response is None:
                raise ClientError(f"{method} {path}: the server could not be reached")
        else:
            response = send()
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"detail": response.text}
            detail = body.get("detail") if isinstance(body, dict) else None
            raise ApiError(response.status_code, str(detail or response.reason_phrase), body.get("errors") if isinstance(body, dict) else None)
        return response.json() if response.content else None

    def _pages(self, method: str, path: str, body: dict[str, Any], limit: int) -> Iterator[dict[str, Any]]:
        cursor = None
        while True:
            page_body = {k: v for k, v in {**body, "limit": limit, "cursor": cursor}.items() if v is not None}
            if method == "GET":
                page = self._call("GET", path, params=page_body, retry=True)
            else:
                page = self._call("POST", path, json=page_body, retry=True)
            yield from page["results"]
            cursor = page["next"]
            if cursor is None:
                return

    def person(self, distinct_id: str) -> dict[str, Any] | None:
        """The person owning `distinct_id` (all ids, user ids, properties, display name), or None."""
        try:
            return self._call("GET", "/api/persons", params={"distinct_id": distinct_id}, retry=True)
        except ApiError as error:
            if error.status_code == 404:
                return None
            raise

    def lookup(self, *, distinct_id: str | None = None, email: str | None = None) -> list[dict[str, Any]]:
        """Persons for a distinct id (its person, with user ids and all ids) or an email."""
        try:
            return self._call("GET", "/api/identity", params={"distinct_id": distinct_id, "email": email}, retry=True)["persons"]
        except ApiError as error:
            if error.status_code == 404:
                return []
            raise

    def merge(self, target_distinct_id: str, source_distinct_id: str) -> dict[str, Any]:
        """Merge the source id's person into the target id's, identified or not (logged)."""
        return self._call("POST", "/api/persons/merge",
                          json={"target_distinct_id": target_distinct_id, "source_distinct_id": source_distinct_id})

    def update_attributes(self, distinct_id: str, *, timestamp: datetime | str | None = None, **operations: Any) -> dict[str, Any]:
        """Change a known person's attributes now, without an event (Heap's add_user_properties);
        returns `{"person", "event_uuid", "warnings"}`."""
        unknown = set(operations) - set(_OPERATIONS)
        if unknown:
            raise ClientError(f"unknown attribute operations {sorted(unknown)}; use {', '.join(_OPERATIONS)}")
        body = {"distinct_id": distinct_id, **{k: v for k, v in operations.items() if v is not None}}
        if timestamp is not None:
            body["timestamp"] = _time(timestamp)
        return self._call("POST", "/api/persons/attributes", json=body)

    def persons(self, filter: Mapping[str, Any] | None = None, *, segment_id: int | None = None,
                page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Every person the filter keeps, newest first (pages are fetched as you iterate)."""
        return self._pages("POST", "/api/persons/query", {"filter": filter, "segment_id": segment_id}, page_size)

    def sessions(
        self,
        filter: Mapping[str, Any] | None = None,
        *,
        person_id: str | None = None,
        distinct_id: str | None = None,
        after: str | None = None,
        before: str | None = None,
        identified: bool | None = None,
        inferred: bool | None = None,
        segment_id: int | None = None,
        page_size: int = 100,
    ) -> Iterator[dict[str, Any]]:
        """Sessions, newest first; `inferred=True` with a person: the anonymous sessions that
        became that person."""
        body = {"filter": filter, "person_id": person_id, "distinct_id": distinct_id, "after": after, "before": before,
                "identified": identified, "inferred": inferred, "segment_id": segment_id}
        return self._pages("POST", "/api/sessions/query", body, page_size)

    def events(
        self,
        filter: Mapping[str, Any] | None = None,
        *,
        events: list[str] | None = None,
        person_id: str | None = None,
        distinct_id: str | None = None,
        session_id: str | None = None,
        after: str | None = None,
        before: str | None = None,
        segment_id: int | None = None,
        page_size: int = 100,
    ) -> Iterator[dict[str, Any]]:
        """Events, newest first, each with its person."""
        body = {"filter": filter, "events": events, "person_id": person_id, "distinct_id": distinct_id,
                "session_id": session_id, "after": after, "before": before, "segment_id": segment_id}
        return self._pages("POST", "/api/events/query", body, page_size)

    def count(
        self,
        measure: str = "persons",
        *,
        events: list[str] | None = None,
        interval: str | None = "day",
        after: str | None = None,
        before: str | None = None,
        breakdown: str | Mapping[str, str] | None = None,
        breakdown_limit: int | None = None,
        filter: Mapping[str, Any] | None = None,
        segment_id: int | None = None,
    ) -> dict[str, Any]:
        """Counts per period: `measure` is events, persons (unique) or new_persons; a `breakdown`
        string is a person attribute, or pass {"property": key} for an event property."""
        body: dict[str, Any] = {"measure": measure, "interval": interval, "events": events or []}
        if isinstance(breakdown, str):
            breakdown = {"attribute": breakdown}
        for name, value in (("after", after), ("before", before), ("breakdown", breakdown), ("filter", filter),
                            ("segment_id", segment_id), ("breakdown_limit", breakdown_limit)):
            if value is not None:
                body[name] = value
        return self._call("POST", "/api/counts", json=body, retry=True)

    def segments(self) -> list[dict[str, Any]]:
        """Every saved segment, by name (all pages)."""
        return list(self._pages("GET", "/api/segments", {}, 1000))

    def create_segment(self, name: str, filter: Mapping[str, Any], description: str = "") -> dict[str, Any]:
        """Save a named filter; use its `id` as `segment_id` or `{"segment": id}` in filters."""
        return self._call("POST", "/api/segments", json={"name": name, "description": description, "filter": filter})

    def delete_segment(self, segment_id: int) -> None:
        self._call("DELETE", f"/api/segments/{segment_id}")
