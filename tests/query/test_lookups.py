"""Identity lookups (Heap's identity API): any distinct id, or an email, to persons and all ids."""

from __future__ import annotations

import pytest

from tests.query.conftest import at, bad_request, identify

pytestmark = pytest.mark.both_stores


def test_any_distinct_id_leads_to_the_person_its_user_id_and_all_ids(api, send):
    send(identify("user-42", "laptop", at(3), set={"email": "Ada@Example.com"}), identify("user-42", "phone", at(2)))
    for asked, is_user_id in (("laptop", False), ("phone", False), ("user-42", True)):
        response = api.get("/api/identity", params={"distinct_id": asked})
        assert response.status_code == 200, response.text
        found = response.json()
        assert found["distinct_id"] == asked and found["is_user_id"] is is_user_id
        (person,) = found["persons"]
        assert person["user_ids"] == ["user-42"]
        assert sorted(person["distinct_ids"]) == ["laptop", "phone", "user-42"]
        assert person["display_name"] == "Ada@Example.com"
    assert api.get("/api/identity", params={"distinct_id": "nobody"}).status_code == 404


def test_an_email_finds_the_persons_that_have_it_as_attribute_or_as_id(api, send):
    send(identify("user-42", "laptop", at(3), set={"email": "Ada@Example.com"}),
         identify("ada@example.com", "tablet", at(1)),
         identify("user-7", "desk", at(1), set={"email": "bob@example.com"}))
    found = api.get("/api/identity", params={"email": "ada@EXAMPLE.com"}).json()
    assert found["email"] == "ada@EXAMPLE.com"
    assert [p["user_ids"] for p in found["persons"]] == [["user-42"]]
    exact = api.get("/api/identity", params={"email": "ada@example.com"}).json()
    assert sorted(p["user_ids"][0] for p in exact["persons"]) == ["ada@example.com", "user-42"]
    assert api.get("/api/identity", params={"email": "nobody@example.com"}).json()["persons"] == []


def test_a_lookup_needs_exactly_one_key_and_a_secret_key(api, client):
    assert bad_request(api.get("/api/identity"))[0][0] == "distinct_id"
    assert bad_request(api.get("/api/identity", params={"distinct_id": "a", "email": "b"}))[0][0] == "distinct_id"
    client.headers.pop("Authorization", None)
    assert client.get("/api/identity", params={"distinct_id": "a"}).status_code == 401
