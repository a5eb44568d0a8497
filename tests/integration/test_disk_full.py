"""A real full disk under a real server: its data directory on a small tmpfs that the test fills.

While the disk is full, ingest answers 507 with a message and stores nothing; the writer stays
alive through its idle checkpoint on the full disk; once space is freed, the same server takes
writes again by itself; SIGTERM stops it, full disk or not. Mounting needs root (CI runs as
root); elsewhere the test skips and says why.
"""

from __future__ import annotations

import errno
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import INGEST_TOKEN, SECRET_KEY, ServerProcess, idstitch_command

DISK_BYTES = 24 * 1024 * 1024


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of DISK_BYTES mounted in tmp_path, unmounted at teardown."""
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mountpoint)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root): {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def fill(disk: Path) -> Path:
    """Write zeros to a file on `disk` until the file system has no block left."""
    filler = disk / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(chunk)
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
    with filler.open("ab", buffering=0) as out:  # the last partial block
        try:
            while True:
                out.write(b"\0")
        except OSError:
            pass
    return filler


def batch(label: str, events: int = 200) -> dict:
    """More events than fit in the WAL pages already on disk, so a commit needs new blocks."""
    return {
        "api_key": INGEST_TOKEN,
        "batch": [
            {"event": "$pageview", "distinct_id": f"{label}-{i}", "uuid": str(uuid.uuid4()),
             "properties": {"$set": {"note": f"{label} {i} " + "x" * 2000}}}
            for i in range(events)
        ],
    }


def stored(database: Path, body: dict) -> int:
    uuids = [e["uuid"] for e in body["batch"]]
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        marks = ",".join("?" * len(uuids))
        return conn.execute(f"SELECT count(*) FROM events WHERE uuid IN ({marks})", uuids).fetchone()[0]


@pytest.fixture
def server_on(disk: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(data_dir=disk / "data", log_dir=tmp_path) as server:
        yield server


def test_full_disk_refuses_with_507_then_recovers_by_itself(disk: Path, server_on: ServerProcess) -> None:
    server = server_on
    with httpx.Client(base_url=server.base_url, timeout=20.0) as http:
        before = batch("before")
        assert http.post("/batch/", json=before).status_code == 200

        filler = fill(disk)
        refused = batch("refused")
        answer = http.post("/batch/", json=refused)
        assert answer.status_code == 507, answer.text[:300]
        assert "disk" in answer.json()["detail"], answer.text
        assert answer.headers.get("Retry-After"), answer.headers

        # Idle long enough for the writer's checkpoint to run on the full disk, twice.
        time.sleep(1.5)
        health = http.get("/_health")
        assert health.status_code == 200, health.text
        again = http.post("/batch/", json=batch("still-full"))
        assert again.status_code == 507, again.text
        imported = http.post(
            "/api/persons/import", headers={"Authorization": f"Bearer {SECRET_KEY}"},
            json={"persons": [{"distinct_ids": [f"imported-{i}"], "properties": {"note": "y" * 2000}} for i in range(300)]},
        )
        assert imported.status_code == 507, imported.text[:300]  # the API's writes too: not a 400

        filler.unlink()
        after = batch("after")
        answer = http.post("/batch/", json=after)
        assert answer.status_code == 200, answer.text
        assert http.post("/batch/", json=refused).status_code == 200  # the client's retry

    assert stored(server.database, before) == len(before["batch"])
    assert stored(server.database, after) == len(after["batch"])
    assert stored(server.database, refused) == len(refused["batch"])  # once: only the retry stored it


def test_unacknowledged_writes_are_not_stored(disk: Path, server_on: ServerProcess) -> None:
    server = server_on
    with httpx.Client(base_url=server.base_url, timeout=20.0) as http:
        filler = fill(disk)
        refused = batch("refused")
        assert http.post("/batch/", json=refused).status_code == 507
        filler.unlink()
        assert http.get("/_health").status_code == 200
    server.stop()
    assert stored(server.database, refused) == 0


def test_sigterm_stops_the_server_while_the_disk_is_full(disk: Path, server_on: ServerProcess) -> None:
    server = server_on
    with httpx.Client(base_url=server.base_url, timeout=20.0) as http:
        assert http.post("/batch/", json=batch("before")).status_code == 200
        fill(disk)
        assert http.post("/batch/", json=batch("refused")).status_code == 507
    time.sleep(1.0)  # the idle checkpoint fails meanwhile
    process = server.process
    assert process is not None
    process.terminate()
    assert process.wait(timeout=10.0) is not None


def test_cli_import_on_a_full_disk_says_so_and_imports_nothing(disk: Path, tmp_path: Path) -> None:
    data_dir = disk / "data"
    server = ServerProcess(data_dir=data_dir, log_dir=tmp_path)
    server.start()
    server.stop()  # the database exists; the CLI writes it alone
    persons = tmp_path / "persons.jsonl"
    persons.write_text("".join(
        f'{{"distinct_ids": ["imported-{i}"], "properties": {{"note": "{"y" * 2000}"}}}}\n' for i in range(300)
    ))
    filler = fill(disk)
    ran = subprocess.run(
        [*idstitch_command(), "import", "--data-dir", str(data_dir), str(persons)], capture_output=True, text=True
    )
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "disk holding the database is full" in ran.stderr and "Traceback" not in ran.stderr, ran.stderr
    filler.unlink()
    with sqlite3.connect(f"file:{server.database}?mode=ro", uri=True) as conn:
        assert conn.execute("SELECT count(*) FROM distinct_ids WHERE distinct_id LIKE 'imported-%'").fetchone()[0] == 0
