"""The writer thread ending: health says so, and every write fails at once instead of hanging."""

from __future__ import annotations

import threading

from fastapi.testclient import TestClient

from idstitch.errors import StoreUnavailable
from idstitch.ingest.pipeline import WriteContext
from tests.conftest import INGEST_TOKEN

WAIT_SECONDS = 5.0


def _end_the_thread(context: WriteContext) -> None:
    raise SystemExit("whatever ends a thread (not an Exception, so no handler of a write catches it)")


def _within(seconds: float, fn) -> list:
    """fn's outcome, or an assertion if it did not return in time (the writer used to hang)."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(fn())
        except BaseException as error:  # noqa: BLE001 - the outcome under test
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"no answer within {seconds}s: the write hangs"
    return outcome


def test_a_stopped_writer_fails_writes_at_once_and_health_reports_it(client: TestClient) -> None:
    writer = client.app.state.idstitch.writer
    [ended] = _within(WAIT_SECONDS, lambda: writer.write_now(_end_the_thread))
    assert isinstance(ended, StoreUnavailable), ended

    health = client.get("/_health")
    assert health.status_code == 503, health.text
    assert health.json()["status"] == "writer_stopped"

    body = {"api_key": INGEST_TOKEN, "batch": [{"event": "$pageview", "distinct_id": "anon-1"}]}
    [answer] = _within(WAIT_SECONDS, lambda: client.post("/batch/", json=body))
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"]
    assert "writer stopped" in answer.json()["detail"]
