"""Rate limits: a token bucket per ingest token (counted in events) and per secret key (counted
in requests); past the limit the answer is 429 with `Retry-After`.

A bucket holds up to `burst` tokens and refills at `rate` per second; a request takes its cost
or is refused with the seconds until it would fit. A request costing more than the whole
bucket (a batch bigger than the burst) is let through when the bucket is full, so every
request can pass eventually. With several servers on one store the buckets are the store's
(store/rate_buckets.py), so a limit counts what all of them let through; one server keeps
them in memory.

The API limit is ASGI middleware on `/api/*` keyed by the `Authorization` header (hashed), or
by the client address when there is none; the ingest limit is checked by the ingest route once
the body has named the token (`check_ingest`). Defaults are generous (settings.SERVER_SETTINGS:
`ingest_rate_limit`, `api_rate_limit`); 0 turns a limit off.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

# Seconds' worth of the rate a bucket holds: short bursts (a page of retries) pass.
BURST_SECONDS = 10
# Buckets kept at most; the least recently used go first (random keys cannot exhaust memory).
MAX_BUCKETS = 10_000


@dataclass(slots=True)
class TokenBucket:
    rate: float
    capacity: float
    tokens: float
    updated: float

    def take(self, cost: float, now: float) -> float:
        """Take `cost` tokens and return 0.0, or take nothing and return the seconds to wait."""
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.updated) * self.rate)
        self.updated = now
        cost = min(cost, self.capacity)
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate


class SharedBuckets(Protocol):
    """Buckets kept outside the process (store/rate_buckets.py); `take` does I/O."""

    def take(self, key: str, cost: float, rate: float, capacity: float) -> float: ...


class RateLimiter:
    """Token buckets by key; `rate` <= 0 means no limit. With `shared`, the buckets are those
    every server shares, under `name` (so that two limiters never share a bucket)."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        max_buckets: int = MAX_BUCKETS,
        clock: Callable[[], float] = time.monotonic,
        shared: SharedBuckets | None = None,
        name: str = "",
    ) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate * BURST_SECONDS)
        self.max_buckets = max_buckets
        self.clock = clock
        self.shared = shared
        self.name = name
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    async def acheck(self, key: str, cost: float = 1.0) -> float:
        """`check` from the event loop: shared buckets are asked from a worker thread."""
        if self.shared is None or not self.enabled:
            return self.check(key, cost)
        return await run_in_threadpool(self.check, key, cost)

    def check(self, key: str, cost: float = 1.0) -> float:
        """0.0 when allowed (the cost is taken), else the seconds until it would be."""
        if not self.enabled:
            return 0.0
        if self.shared is not None:
            return self.shared.take(f"{self.name}:{key}", cost, self.rate, self.burst)
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, self.burst, now)
                if len(self._buckets) > self.max_buckets:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(key)
            return bucket.take(cost, now)


@dataclass(frozen=True, slots=True)
class RateLimits:
    ingest: RateLimiter
    api: RateLimiter

    @classmethod
    def per_second(cls, ingest_events: float, api_requests: float, shared: SharedBuckets | None = None) -> RateLimits:
        return cls(
            RateLimiter(ingest_events, shared=shared, name="ingest"),
            RateLimiter(api_requests, shared=shared, name="api"),
        )


def too_many_requests(wait: float, what: str) -> JSONResponse:
    seconds = max(1, math.ceil(wait))
    return JSONResponse(
        {"type": "throttled", "code": "rate_limited", "detail": f"Too many {what}; retry in {seconds} s"},
        status_code=429,
        headers={"Retry-After": str(seconds)},
    )


async def check_ingest(request: Request, token: str, events: int) -> Response | None:
    """None when the ingest token may send `events` more events now, else the 429 to answer."""
    limits: RateLimits | None = getattr(request.app.state, "rate_limits", None)
    if limits is None:
        return None
    wait = await limits.ingest.acheck(token, max(1, events))
    return too_many_requests(wait, "events for this ingest token") if wait else None


class ApiRateLimitMiddleware:
    """Limits `/api/*` requests per secret key (per client address without one)."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.limiter.enabled or not _is_api(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        wait = await self.limiter.acheck(_caller(scope))
        if wait:
            await too_many_requests(wait, "requests for this key")(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _is_api(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


def _caller(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            # Hashed: the limiter's memory never holds a usable secret.
            return "key:" + hashlib.sha256(value).hexdigest()
    client = scope.get("client")
    return "addr:" + (client[0] if client else "unknown")
