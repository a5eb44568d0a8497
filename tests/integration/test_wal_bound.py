"""Sustained ingest into a real server keeps SQLite's WAL bounded, and status shows its size.

Each request is its own commit (sent one after another), so a checkpoint policy that counts
commits lets the WAL hold every byte written until the count is reached; one that keeps up
copies the WAL back into the database file while the stream goes on.
"""

from __future__ import annotations

import subprocess
import uuid

import httpx

from tests.integration.conftest import INGEST_TOKEN, SECRET_KEY, ServerProcess, idstitch_command

REQUESTS = 100
EVENTS_PER_REQUEST = 40
PROPERTY_BYTES = 10_000  # about 0.4 MB a request, 40 MB in all
WAL_BOUND_BYTES = 24 * 1024 * 1024


def _request(number: int) -> dict:
    return {
        "api_key": INGEST_TOKEN,
        "batch": [
            {"event": "$pageview", "distinct_id": f"visitor-{number}-{i}", "uuid": str(uuid.uuid4()),
             "properties": {"blob": f"{number}-{i}-" + "z" * PROPERTY_BYTES}}
            for i in range(EVENTS_PER_REQUEST)
        ],
    }


def _wal_bytes(server: ServerProcess) -> int:
    wal = server.database.with_name(server.database.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def test_sustained_ingest_keeps_the_wal_bounded(server: ServerProcess) -> None:
    largest = 0
    with httpx.Client(base_url=server.base_url, timeout=30.0) as http:
        for number in range(REQUESTS):
            assert http.post("/batch/", json=_request(number)).status_code == 200
            largest = max(largest, _wal_bytes(server))
        written = server.database.stat().st_size
        status = http.get("/api/status", headers={"Authorization": f"Bearer {SECRET_KEY}"})
    assert written > REQUESTS * EVENTS_PER_REQUEST * PROPERTY_BYTES / 2, "the database file stayed empty"
    assert largest <= WAL_BOUND_BYTES, f"the WAL grew to {largest:,} bytes"

    assert status.status_code == 200, status.text
    body = status.json()
    assert body["wal_bytes"] == _wal_bytes(server) or abs(body["wal_bytes"] - _wal_bytes(server)) < 1024 * 1024
    assert body["database_bytes"] >= written
    assert body["writer"] == {"running": True, "fault": None}


def test_status_command_shows_the_wal(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.base_url, timeout=30.0) as http:
        assert http.post("/batch/", json=_request(0)).status_code == 200
    shown = subprocess.run(
        [*idstitch_command(), "status", "--data-dir", str(server.data_dir)], capture_output=True, text=True, check=True
    )
    lines = shown.stdout.splitlines()
    assert lines[0] == f"store: {server.database}"
    assert lines[1].startswith("database: ") and lines[1].endswith(" bytes")
    assert lines[2].startswith("wal: ") and lines[2].endswith(" bytes")
