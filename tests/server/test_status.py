"""`GET /api/status`: what this server runs on, as the store itself reports it."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.both_stores


def test_status_shows_the_durability_the_writer_runs_with(api: httpx.Client, store: str | None) -> None:
    status = api.get("/api/status")
    assert status.status_code == 200, status.text
    expected = {"journal_mode": "wal", "synchronous": "full"} if store is None else {"fsync": "on", "synchronous_commit": "on"}
    assert status.json()["durability"] == expected
    assert status.json()["writer"] == {"running": True, "fault": None}
