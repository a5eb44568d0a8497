"""Regular expressions never hold the server: a real `idstitch serve`, patterns that take a
backtracking engine seconds to minutes, and ingest requests timed while they run."""

from __future__ import annotations

import threading
import time
import uuid

import httpx

from tests.integration.conftest import INGEST_TOKEN, SECRET_KEY, ServerProcess

ADMIN = {"Authorization": f"Bearer {SECRET_KEY}"}
# Four bounded repeats: no nesting, no unbounded quantifier, so the guard lets it through; Python's
# `re` backtracks through every split of a run of `a`s between them.
HEAVY = "a{0,100}a{0,100}a{0,100}a{0,100}b"


def capture(base_url: str, distinct_id: str, **properties: object) -> dict[str, object]:
    return {"event": "signed up", "distinct_id": distinct_id, "uuid": str(uuid.uuid4()), "properties": properties}


def send(base_url: str, *events: dict[str, object], timeout: float = 30.0) -> float:
    """Send a batch; the seconds it took to be answered 200."""
    start = time.monotonic()
    answer = httpx.post(f"{base_url}/batch/", json={"api_key": INGEST_TOKEN, "batch": list(events)}, timeout=timeout)
    assert answer.status_code == 200, answer.text
    return time.monotonic() - start


def test_settings_refuse_a_pattern_the_query_api_refuses(server: ServerProcess) -> None:
    answer = httpx.patch(
        f"{server.base_url}/api/project/settings", json={"illegal_id_patterns": ["(a+)+$"]}, headers=ADMIN
    )
    assert answer.status_code == 400
    assert "nested quantifiers" in answer.text and "(a+)+$" in answer.text


def set_illegal_id_patterns(server: ServerProcess, *patterns: str) -> None:
    answer = httpx.patch(
        f"{server.base_url}/api/project/settings", json={"illegal_id_patterns": list(patterns)}, headers=ADMIN
    )
    assert answer.status_code == 200, answer.text
    time.sleep(0.6)  # the settings cache (server/state.py PROJECT_TTL_SECONDS)


def test_a_projects_illegal_id_pattern_is_searched_in_the_id(server: ServerProcess) -> None:
    set_illegal_id_patterns(server, "^tmp_")
    identify = {"event": "$identify", "distinct_id": "tmp_abc", "uuid": str(uuid.uuid4()),
                "properties": {"$anon_distinct_id": "anon-1"}}
    send(server.base_url, capture(server.base_url, "anon-1"), identify)
    person = httpx.get(f"{server.base_url}/api/persons", params={"distinct_id": "anon-1"}, headers=ADMIN).json()
    assert person["distinct_ids"] == ["anon-1"] and not person["is_identified"]  # ^tmp_ found tmp_abc


def test_an_illegal_id_pattern_never_holds_the_ingest_path(server: ServerProcess) -> None:
    set_illegal_id_patterns(server, HEAVY)
    # Ids of 199 `a`s and a `!`, each tested against HEAVY as it arrives, with a plain event
    # sent meanwhile from another client: both are answered at once.
    identifies = [
        {"event": "$identify", "distinct_id": "a" * 199 + "!", "uuid": str(uuid.uuid4()),
         "properties": {"$anon_distinct_id": f"anon-heavy-{i}"}}
        for i in range(20)
    ]
    heavy: list[float] = []
    sender = threading.Thread(target=lambda: heavy.append(send(server.base_url, *identifies, timeout=120)))
    sender.start()
    time.sleep(0.05)
    plain = send(server.base_url, capture(server.base_url, "bystander"), timeout=120)
    sender.join()
    assert heavy[0] < 2.0 and plain < 2.0, (heavy, plain)


def test_a_regex_filter_over_long_values_answers_and_ingest_goes_on(server: ServerProcess) -> None:
    send(server.base_url, *[
        {"event": "$identify", "distinct_id": f"u-{i}", "uuid": str(uuid.uuid4()),
         "properties": {"$anon_distinct_id": f"c-{i}", "$set": {"bio": "a" * 1999}}}
        for i in range(30)
    ])
    answers: list[httpx.Response] = []
    started = time.monotonic()

    def query() -> None:
        body = {"filter": {"attribute": "bio", "op": "regex", "value": HEAVY}}
        answers.append(httpx.post(f"{server.base_url}/api/persons/query", json=body, headers=ADMIN, timeout=120))

    reader = threading.Thread(target=query)
    reader.start()
    time.sleep(0.1)
    plain = send(server.base_url, capture(server.base_url, "bystander"), timeout=120)
    reader.join()
    took = time.monotonic() - started
    assert plain < 1.0, plain
    assert answers[0].status_code == 200 and answers[0].json()["results"] == []
    assert took < 3.0, took
