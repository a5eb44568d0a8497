"""Sessions: kept at ingest, persons resolved at read time, `identified` and `inferred` flags."""

from __future__ import annotations

import pytest

from tests.query.conftest import at, bad_request, identify, pageview, track

pytestmark = pytest.mark.both_stores


def customer_with_anonymous_history(send):
    """A customer browses anonymously on a laptop (two sessions), logs in there in a third, comes
    back logged in; on a phone, one anonymous session, then a login. A stranger never logs in."""
    send(
        pageview("laptop", "https://shop.example/", at(10), "laptop-1"),
        pageview("laptop", "https://shop.example/pricing", at(10, hours=-0.1), "laptop-1"),
        pageview("laptop", "https://shop.example/blog", at(8), "laptop-2"),
        pageview("stranger", "https://shop.example/", at(7), "stranger-1"),
        pageview("phone", "https://m.shop.example/", at(6), "phone-1"),
    )
    send(
        pageview("laptop", "https://shop.example/login", at(5), "laptop-3"),
        identify("cust-1", "laptop", at(5, hours=-0.1), "laptop-3", set={"name": "Ada Lovelace", "avatar": "https://img.example/ada.png"}),
        pageview("cust-1", "https://shop.example/account", at(5, hours=-0.2), "laptop-3"),
    )
    send(pageview("cust-1", "https://shop.example/orders", at(3), "laptop-4"))
    send(
        pageview("phone", "https://m.shop.example/login", at(2), "phone-2"),
        identify("cust-1", "phone", at(2, hours=-0.1), "phone-2"),
    )


def sessions(api, **params):
    response = api.get("/api/sessions", params=params)
    assert response.status_code == 200, response.text
    return response.json()["results"]


def test_which_anonymous_sessions_became_this_customer(api, send):
    customer_with_anonymous_history(send)
    person = api.get("/api/persons", params={"distinct_id": "cust-1"}).json()

    response = api.get(f"/api/persons/{person['id']}/sessions", params={"inferred": "true"})
    assert response.status_code == 200, response.text
    assert [s["session_id"] for s in response.json()["results"]] == ["phone-1", "laptop-2", "laptop-1"]

    every = {s["session_id"]: s for s in sessions(api, person_id=person["id"])}
    assert {k: (s["identified"], s["inferred"]) for k, s in every.items()} == {
        "phone-2": (True, False),
        "laptop-4": (False, False),
        "laptop-3": (True, False),
        "phone-1": (False, True),
        "laptop-2": (False, True),
        "laptop-1": (False, True),
    }
    # The stranger's session is neither, and is not the customer's.
    assert [(s["session_id"], s["identified"], s["inferred"]) for s in sessions(api, distinct_id="stranger")] == [
        ("stranger-1", False, False)
    ]
    assert sorted(s["session_id"] for s in sessions(api, inferred="true")) == ["laptop-1", "laptop-2", "phone-1"]


def test_a_session_shows_its_person_ids_times_count_and_entry_url(api, send):
    customer_with_anonymous_history(send)
    (session,) = [s for s in sessions(api) if s["session_id"] == "laptop-3"]
    assert session["person"]["display_name"] == "Ada Lovelace"
    assert session["person"]["avatar_url"] == "https://img.example/ada.png"
    assert session["person"]["user_ids"] == ["cust-1"]
    assert session["distinct_ids"] == ["cust-1", "laptop"]
    assert session["event_count"] == 3
    assert session["entry_url"] == "https://shop.example/login"
    assert abs(session["duration_seconds"] - 720) < 1
    (first,) = [s for s in sessions(api) if s["session_id"] == "laptop-1"]
    assert first["entry_url"] == "https://shop.example/"
    assert first["person"]["display_name"] == "Ada Lovelace"  # resolved through the mapping, now


def test_a_session_sent_in_pieces_and_out_of_order_adds_up(api, send):
    send(pageview("v1", "https://a.example/second", at(1), "s-1"))
    send(track("v1", "Clicked", at(1, hours=-0.5), "s-1"))
    send(pageview("v1", "https://a.example/first", at(1, hours=0.5), "s-1"))  # earlier, arrives last
    (session,) = sessions(api)
    assert session["entry_url"] == "https://a.example/first"
    assert session["event_count"] == 3
    assert session["started_at"] < session["ended_at"]
    assert abs(session["duration_seconds"] - 3600) < 1


def test_an_identify_that_names_nobody_does_not_identify_the_session(api, send):
    send(pageview("cookie", "https://a.example/", at(1), "s-1"),
         {"type": "identify", "user_id": None, "anonymous_id": "cookie", "set": {"theme": "dark"},
          "timestamp": at(1), "session_id": "s-1"})
    (session,) = sessions(api)
    assert (session["identified"], session["inferred"]) == (False, False)


def test_a_refused_identify_infers_nothing(api, send):
    # alice owns the shared computer's id; bob's login there is refused (row F), so the shared
    # computer's earlier session stays alice's and is not attributed to bob.
    send(pageview("shared-pc", "https://a.example/", at(5), "pc-1"))
    send(identify("alice", "shared-pc", at(4), "pc-2"))
    send(identify("bob", "shared-pc", at(3), "pc-3"))
    flags = {s["session_id"]: (s["identified"], s["inferred"], s["person"]["display_name"]) for s in sessions(api)}
    assert flags == {"pc-1": (False, True, "alice"), "pc-2": (True, False, "alice"), "pc-3": (True, False, "bob")}


def test_sessions_by_time_flag_attribute_and_event_property(api, send):
    customer_with_anonymous_history(send)
    recent = sessions(api, after="-4d")
    assert [s["session_id"] for s in recent] == ["phone-2", "laptop-4"]
    assert [s["session_id"] for s in sessions(api, before="-9d")] == ["laptop-1"]
    assert [s["session_id"] for s in sessions(api, identified="true")] == ["phone-2", "laptop-3"]

    by_name = api.post("/api/sessions/query", json={"filter": {"attribute": "name", "op": "contains", "value": "ada"}})
    assert len(by_name.json()["results"]) == 6
    by_page = api.post(
        "/api/sessions/query",
        json={"filter": {"property": "$current_url", "op": "regex", "value": "^https://m\\."}, "inferred": False},
    )
    assert [s["session_id"] for s in by_page.json()["results"]] == ["phone-2"]
    as_text = api.get("/api/sessions", params={"filter": '{"not": {"attribute": "name", "op": "is_set"}}'})
    assert [s["session_id"] for s in as_text.json()["results"]] == ["stranger-1"]


def test_sessions_page_with_a_cursor(api, send):
    send(*[pageview(f"v{i}", "https://a.example/", at(i), f"s-{i}") for i in range(5)])
    first = api.get("/api/sessions", params={"limit": 2}).json()
    second = api.get("/api/sessions", params={"limit": 2, "cursor": first["next"]}).json()
    third = api.get("/api/sessions", params={"limit": 2, "cursor": second["next"]}).json()
    assert [s["session_id"] for s in first["results"] + second["results"] + third["results"]] == [f"s-{i}" for i in range(5)]
    assert third["next"] is None


def test_bad_session_parameters_are_400s_that_name_the_parameter(api):
    assert bad_request(api.get("/api/sessions", params={"after": "last tuesday"}))[0][0] == "after"
    assert bad_request(api.get("/api/sessions", params={"limit": 0}))[0][0] == "limit"
    assert bad_request(api.get("/api/sessions", params={"filter": "{nope"}))[0][0] == "filter"
    assert api.get("/api/persons/nobody/sessions").status_code == 404
