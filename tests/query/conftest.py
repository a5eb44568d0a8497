"""Helpers for the query API tests: send events with idstitch's own ingest API at chosen times."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tests.conftest import INGEST_TOKEN


def at(days_ago: float = 0, *, hours: float = 0) -> str:
    """An ISO time `days_ago` days (and `hours` hours) before now, so relative filters apply."""
    return (datetime.now(timezone.utc) - timedelta(days=days_ago, hours=hours)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Sender:
    """Posts native messages in one batch per call; asserts every message was accepted."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def __call__(self, *messages: dict[str, Any]) -> list[dict[str, Any]]:
        response = self.client.post("/ingest/batch", json={"token": INGEST_TOKEN, "batch": list(messages)})
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert all(r["status"] in ("accepted", "duplicate") for r in results), results
        return results


def track(distinct_id: str, event: str, when: str, session: str | None = None, **extra: Any) -> dict[str, Any]:
    message = {"type": "track", "distinct_id": distinct_id, "event": event, "timestamp": when, **extra}
    if session:
        message["session_id"] = session
    return message


def pageview(distinct_id: str, url: str, when: str, session: str) -> dict[str, Any]:
    return track(distinct_id, "$pageview", when, session, properties={"$current_url": url})


def identify(user_id: str, anonymous_id: str | None, when: str, session: str | None = None, **extra: Any) -> dict[str, Any]:
    message = {"type": "identify", "user_id": user_id, "anonymous_id": anonymous_id, "timestamp": when, **extra}
    if session:
        message["session_id"] = session
    return message


@pytest.fixture
def send(api: Any) -> Sender:
    return Sender(api)


def bad_request(response: Any) -> list[tuple[str, str]]:
    """The (path, reason) pairs of a 400 answer."""
    assert response.status_code == 400, (response.status_code, response.text)
    body = response.json()
    return [(e["path"], e["reason"]) for e in body["errors"]]
