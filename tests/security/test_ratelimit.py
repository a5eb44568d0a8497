"""Rate limits: token buckets per ingest token (events) and per secret key (requests), 429 with
Retry-After past them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient

from idstitch.server.app import create_app
from idstitch.server.ratelimit import RateLimiter, TokenBucket
from idstitch.server.state import ServerConfig
from tests.conftest import INGEST_TOKEN, SECRET_KEY

pytestmark = pytest.mark.both_stores


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_lets_a_burst_through_then_refills_at_its_rate():
    bucket = TokenBucket(rate=2, capacity=4, tokens=4, updated=0)
    assert [bucket.take(1, 0) for _ in range(4)] == [0, 0, 0, 0]
    assert bucket.take(1, 0) == pytest.approx(0.5)
    assert bucket.take(1, 0.5) == 0
    assert bucket.take(2, 0.5) == pytest.approx(1.0)


def test_a_cost_bigger_than_the_bucket_passes_when_the_bucket_is_full():
    bucket = TokenBucket(rate=1, capacity=10, tokens=10, updated=0)
    assert bucket.take(500, 0) == 0
    assert bucket.take(500, 1) == pytest.approx(9.0)


def test_each_key_has_its_own_bucket_and_old_buckets_are_forgotten():
    clock = Clock()
    limiter = RateLimiter(1, burst=1, max_buckets=2, clock=clock)
    assert limiter.check("a") == 0 and limiter.check("a") > 0
    assert limiter.check("b") == 0
    limiter.check("c")  # "a" is the least recently used: dropped, so it starts full again
    assert limiter.check("a") == 0


def test_a_rate_of_zero_means_no_limit():
    limiter = RateLimiter(0)
    assert all(limiter.check("a", 10**9) == 0 for _ in range(100))


@pytest.fixture
def limited(config: ServerConfig) -> Iterator[TestClient]:
    with TestClient(create_app(replace(config, ingest_rate_limit=5, api_rate_limit=1))) as client:
        yield client


def test_an_ingest_token_past_its_limit_gets_429_with_retry_after(limited):
    events = [{"event": "x", "distinct_id": f"v-{n}"} for n in range(50)]
    first = limited.post("/batch/", json={"api_key": INGEST_TOKEN, "batch": events})  # 50 = the burst (5/s x 10 s)
    assert first.status_code == 200
    throttled = limited.post("/batch/", json={"api_key": INGEST_TOKEN, "batch": events[:10]})
    assert throttled.status_code == 429
    assert 1 <= int(throttled.headers["retry-after"]) <= 3
    assert throttled.json()["code"] == "rate_limited"
    # Nothing of the refused request was stored; everything of the accepted one was.
    persons = limited.get("/api/persons", params={"limit": 1000}, headers={"Authorization": f"Bearer {SECRET_KEY}"})
    assert len(persons.json()["results"]) == 50


def test_a_secret_key_past_its_limit_gets_429_and_other_keys_do_not(limited):
    auth = {"Authorization": f"Bearer {SECRET_KEY}"}
    statuses = [limited.get("/api/warnings", headers=auth).status_code for _ in range(12)]
    assert statuses[:10] == [200] * 10 and statuses[10:] == [429, 429]
    other = limited.get("/api/warnings", headers={"Authorization": "Bearer sk_someone_else"})
    assert other.status_code == 401
    # Ingest is limited separately.
    assert limited.post("/batch/", json={"api_key": INGEST_TOKEN, "batch": [{"event": "x", "distinct_id": "a"}]}).status_code == 200


def test_the_limits_are_server_settings_with_environment_variables():
    from idstitch.settings import SERVER_SETTINGS

    settings = {s.name: s for s in SERVER_SETTINGS}
    assert settings["ingest_rate_limit"].env == "IDSTITCH_INGEST_RATE_LIMIT"
    assert settings["api_rate_limit"].env == "IDSTITCH_API_RATE_LIMIT"
    assert settings["ingest_rate_limit"].default >= 10_000 and settings["api_rate_limit"].default >= 50
