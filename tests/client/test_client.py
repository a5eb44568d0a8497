"""idstitch.Client against a real server on a loopback port: sending, reading, retries, limits."""

from __future__ import annotations

import ast
import json
import logging
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

import idstitch
from tests.client.conftest import running_server
from tests.conftest import INGEST_TOKEN, SECRET_KEY

pytestmark = pytest.mark.both_stores


def ago(days: float) -> datetime:
    return datetime.now(timezone.utc) - timedelta(days=days)


def test_the_package_exports_the_client_and_nothing_by_accident():
    assert idstitch.__all__ == ["ApiError", "Client", "ClientError", "__version__"]
    assert idstitch.Client.__module__ == "idstitch.client"


def test_the_client_imports_nothing_from_the_server_or_the_store():
    source = Path(idstitch.client.__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert not [name for name in imported if name.startswith("idstitch")], imported


def test_send_every_kind_of_message_and_read_it_back(sdk):
    assert sdk.track("cookie-1", "Viewed pricing", {"plan": "pro"}, session_id="s-1", timestamp=ago(1))
    sdk.identify("user-42", anonymous_id="cookie-1", set={"email": "ada@example.com", "plan": "pro"}, session_id="s-1")
    sdk.alias("user-42", "legacy-7")
    sdk.set_attributes("user-42", add={"logins": 2}, union={"teams": ["growth"]}, set_once={"first_plan": "pro"},
                       append={"history": "signup"})
    sdk.set_attributes("legacy-7", unset=["plan"], remove={"teams": "growth"})
    assert sdk.flush(timeout=10) is True

    person = sdk.person("cookie-1")
    assert sorted(person["distinct_ids"]) == ["cookie-1", "legacy-7", "user-42"]
    assert person["user_ids"] == ["user-42"]
    assert person["properties"] == {"email": "ada@example.com", "logins": 2, "teams": [], "first_plan": "pro",
                                    "history": ["signup"]}
    assert sdk.person("nobody") is None
    assert [p["id"] for p in sdk.lookup(distinct_id="legacy-7")] == [person["id"]]
    assert [p["id"] for p in sdk.lookup(email="ADA@example.com")] == [person["id"]]
    assert sdk.lookup(distinct_id="nobody") == []

    updated = sdk.update_attributes("legacy-7", set={"plan": "team"}, add={"logins": 1})
    assert updated["person"]["properties"]["plan"] == "team" and updated["person"]["properties"]["logins"] == 3
    events = list(sdk.events(person_id=person["id"], page_size=2))
    assert [e["event"] for e in events][-2:] == ["$identify", "Viewed pricing"]
    assert all(e["person"]["display_name"] == "ada@example.com" for e in events)


def test_merge_needs_the_secret_key_and_joins_two_customers(sdk, live_server):
    sdk.identify("ann", anonymous_id="a-phone")
    sdk.identify("ann-work", anonymous_id="a-laptop")
    sdk.flush()
    merged = sdk.merge("ann", "ann-work")
    assert sorted(merged["user_ids"]) == ["ann", "ann-work"]
    sender_only = idstitch.Client(live_server.url, ingest_token=INGEST_TOKEN)
    with pytest.raises(idstitch.ClientError, match="needs a secret key"):
        sender_only.merge("ann", "x")
    sender_only.shutdown()


def test_the_three_questions(sdk):
    # 1. Which anonymous sessions became this customer?
    sdk.track("laptop", "$pageview", {"$current_url": "https://shop.example/"}, session_id="l-1", timestamp=ago(9))
    sdk.track("laptop", "$pageview", {"$current_url": "https://shop.example/pricing"}, session_id="l-2", timestamp=ago(8))
    sdk.identify("cust-1", anonymous_id="laptop", session_id="l-3", timestamp=ago(7),
                 set={"plan": "pro", "total_spend": 250})
    # 2. How many unique users per plan signed up last week?
    for name, plan, days in (("a", "pro", 1), ("b", "free", 2), ("c", "pro", 3), ("d", "free", 12)):
        sdk.identify(f"u-{name}", anonymous_id=f"c-{name}", timestamp=ago(days), set={"plan": plan, "total_spend": 50})
        sdk.track(f"u-{name}", "Signed up", timestamp=ago(days))
    sdk.track("u-a", "Signed up", timestamp=ago(1))  # a retried sign-up counts once
    # 3. Which persons have total_spend > 100 and a first purchase after a date?
    sdk.track("cust-1", "Purchase", timestamp=ago(20))
    sdk.identify("u-e", anonymous_id="c-e", timestamp=ago(6), set={"plan": "pro", "total_spend": 180})
    sdk.track("u-e", "Purchase", timestamp=ago(5))
    sdk.flush()

    customer = sdk.person("cust-1")
    inferred = list(sdk.sessions(person_id=customer["id"], inferred=True))
    assert [s["session_id"] for s in inferred] == ["l-2", "l-1"]
    assert all(s["person"]["display_name"] == "cust-1" for s in inferred)

    signups = sdk.count("persons", events=["Signed up"], after="-7d", interval="day", breakdown="plan")
    assert {s["breakdown"]: s["total"] for s in signups["series"]} == {"pro": 2, "free": 1}

    big_new_spenders = {
        "and": [
            {"attribute": "total_spend", "op": "gt", "value": 100},
            {"did": "Purchase"},
            {"not": {"did": "Purchase", "before": ago(10).isoformat()}},
        ]
    }
    assert [p["display_name"] for p in sdk.persons(big_new_spenders)] == ["u-e"]
    segment = sdk.create_segment("New big spenders", big_new_spenders)
    assert [p["display_name"] for p in sdk.persons(segment_id=segment["id"])] == ["u-e"]
    assert [s["name"] for s in sdk.segments()] == ["New big spenders"]
    sdk.delete_segment(segment["id"])
    assert sdk.segments() == []


def test_a_bad_filter_raises_an_api_error_naming_the_path(sdk):
    with pytest.raises(idstitch.ApiError) as raised:
        list(sdk.persons({"and": [{"attribute": "plan", "op": "sounds_like", "value": "pro"}]}))
    assert raised.value.status_code == 400
    assert raised.value.errors[0]["path"] == "filter.and[0].op"
    with pytest.raises(idstitch.ClientError, match="unknown attribute operations"):
        sdk.track("a", "b", increment={"x": 1})


class FlakyTransport(httpx.BaseTransport):
    """The real server behind a transport that loses the first answers: a connection error, then
    a 503 after the server has stored the batch (so the retry re-sends events already stored)."""

    def __init__(self, url: str, failures: list[str]) -> None:
        self.real = httpx.HTTPTransport()
        self.failures = list(failures)
        self.calls = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        failure = self.failures.pop(0) if self.failures and request.url.path == "/ingest/batch" else None
        if failure == "connect":
            raise httpx.ConnectError("connection refused", request=request)
        response = self.real.handle_request(request)
        if failure == "503":
            response.read()
            return httpx.Response(503, headers={"Retry-After": "0.05"}, request=request)
        return response


def test_network_errors_and_5xx_are_retried_and_each_event_is_stored_once(live_server):
    transport = FlakyTransport(live_server.url, ["connect", "503"])
    client = idstitch.Client(live_server.url, ingest_token=INGEST_TOKEN, secret_key=SECRET_KEY, backoff=0.01,
                             flush_interval=0.01, transport=transport)
    for n in range(3):
        client.track("flaky", f"event-{n}")
    assert client.flush(timeout=10)
    person = client.person("flaky")
    assert person is not None
    events = list(client.events(person_id=person["id"]))
    assert sorted(e["event"] for e in events) == ["event-0", "event-1", "event-2"]
    assert client.dropped == 0
    client.shutdown()


def test_a_full_queue_drops_with_a_warning_and_never_blocks(live_server, caplog):
    release = threading.Event()

    def stuck(request: httpx.Request) -> httpx.Response:
        release.wait(10)
        return httpx.Response(200, json={"status": 1, "results": []})

    client = idstitch.Client(live_server.url, ingest_token=INGEST_TOKEN, max_queue_size=3, flush_at=1,
                             transport=httpx.MockTransport(stuck))
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="idstitch.client"):
        answers = [client.track("busy", f"event-{n}") for n in range(20)]
    assert time.monotonic() - started < 1.0
    assert answers.count(None) == client.dropped >= 15
    assert "the queue is full (3 messages)" in caplog.text
    release.set()
    client.shutdown(timeout=10)
    with caplog.at_level(logging.WARNING, logger="idstitch.client"):
        assert client.track("busy", "too late") is None
    assert "shut down" in caplog.text


def test_a_client_error_answer_drops_the_batch_and_says_why(live_server, caplog):
    client = idstitch.Client(live_server.url, ingest_token="phc_wrong", flush_interval=0.01)
    with caplog.at_level(logging.ERROR, logger="idstitch.client"):
        client.track("x", "y")
        assert client.flush(timeout=10)
    assert client.dropped == 1 and "refused a batch of 1 (401)" in caplog.text
    client.shutdown()


def test_queued_events_are_sent_at_interpreter_exit(live_server, tmp_path):
    script = textwrap.dedent(f"""
        import idstitch
        client = idstitch.Client({live_server.url!r}, ingest_token={INGEST_TOKEN!r}, flush_interval=3600, flush_at=1000)
        for n in range(5):
            client.track("leaving", f"event-{{n}}")
        # no flush(): atexit sends them
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    reader = idstitch.Client(live_server.url, secret_key=SECRET_KEY)
    person = reader.person("leaving")
    assert person is not None
    assert len(list(reader.events(person_id=person["id"]))) == 5
    reader.shutdown()


class RecordingTransport(httpx.BaseTransport):
    """The real network, noting each batch request's `sent_at` and the answer it got."""

    def __init__(self) -> None:
        self.real = httpx.HTTPTransport()
        self.attempts: list[tuple[str, int]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.real.handle_request(request)
        if request.url.path == "/ingest/batch":
            self.attempts.append((json.loads(request.content)["sent_at"], response.status_code))
        return response


def test_sequential_writes_keep_their_order_through_a_refused_request(config):
    # A real refusal: the server's ingest rate limit answers 429 with Retry-After (as a 503 would).
    with running_server(replace(config, ingest_rate_limit=10)) as server:
        burst = [{"type": "track", "distinct_id": "other", "event": "e"}] * 100
        assert httpx.post(f"{server.url}/ingest/batch", json={"token": INGEST_TOKEN, "batch": burst}).status_code == 200
        transport = RecordingTransport()
        client = idstitch.Client(server.url, ingest_token=INGEST_TOKEN, secret_key=SECRET_KEY, flush_at=1,
                                 backoff=0.01, transport=transport)
        for n in range(30):
            client.set_attributes("ada", set={"n": n})
        assert client.flush(timeout=60)
        assert client.person("ada")["properties"]["n"] == 29
        client.shutdown()
    refused = [i for i, (_, status) in enumerate(transport.attempts) if status == 429]
    assert refused, transport.attempts
    # The retry says when it was sent, not when the first attempt was.
    first, retry = (datetime.fromisoformat(transport.attempts[i][0].replace("Z", "+00:00")) for i in (refused[0], refused[0] + 1))
    assert retry - first >= timedelta(seconds=0.9)
