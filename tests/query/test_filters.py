"""Filter documents on persons and events: typed comparisons, and/or/not, "did X", errors, safety."""

from __future__ import annotations

import pytest

from tests.query.conftest import at, bad_request, identify, track

pytestmark = pytest.mark.both_stores


def names(response) -> list[str]:
    assert response.status_code == 200, response.text
    return sorted(p["display_name"] for p in response.json()["results"])


def persons(api, document):
    return names(api.post("/api/persons/query", json={"filter": document}))


@pytest.fixture
def shop(send):
    """Four customers with typed attributes and purchases at known times."""
    send(
        identify("u-ada", "c-ada", at(40), set={"name": "ada", "email": "ada@example.com", "plan": "pro", "total_spend": 250,
                                               "beta": True, "teams": ["growth", "core"], "signed_up": "2026-01-15"}),
        identify("u-bob", "c-bob", at(40), set={"name": "bob", "plan": "free", "total_spend": 100, "beta": False,
                                               "teams": ["core"], "signed_up": "2026-03-01T12:00:00+02:00"}),
        identify("u-cy", "c-cy", at(40), set={"name": "cy", "plan": "pro", "total_spend": 120.5, "signed_up": "2025-12-31"}),
        identify("u-dee", "c-dee", at(40), set={"name": "dee", "plan": "Pro", "total_spend": "300"}),
    )
    send(
        track("u-ada", "Purchase", at(30), properties={"amount": 200, "currency": "EUR"}),
        track("u-ada", "Purchase", at(2), properties={"amount": 50, "currency": "EUR"}),
        track("c-cy", "Purchase", at(3), properties={"amount": 120.5, "currency": "USD"}),
        track("u-bob", "Purchase", at(1), properties={"amount": 100, "currency": "EUR"}),
    )


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        pytest.param({"attribute": "plan", "op": "equals", "value": "pro"}, ["ada", "cy"], id="equals-is-case-sensitive"),
        pytest.param({"attribute": "plan", "op": "not_equals", "value": "pro"}, ["bob", "dee"], id="not-equals"),
        pytest.param({"attribute": "total_spend", "op": "equals", "value": 100}, ["bob"], id="number-equals"),
        pytest.param({"attribute": "total_spend", "op": "gt", "value": 100}, ["ada", "cy"], id="gt-skips-numeric-strings"),
        pytest.param({"attribute": "total_spend", "op": "gte", "value": 100}, ["ada", "bob", "cy"], id="gte"),
        pytest.param({"attribute": "total_spend", "op": "lt", "value": 121}, ["bob", "cy"], id="lt"),
        pytest.param({"attribute": "beta", "op": "equals", "value": True}, ["ada"], id="boolean"),
        pytest.param({"attribute": "name", "op": "contains", "value": "D"}, ["ada", "dee"], id="contains-ignores-case"),
        pytest.param({"attribute": "teams", "op": "contains", "value": "growth"}, ["ada"], id="list-contains"),
        pytest.param({"attribute": "teams", "op": "not_contains", "value": "core"}, ["cy", "dee"], id="not-contains"),
        pytest.param({"attribute": "email", "op": "regex", "value": r"@example\.com$"}, ["ada"], id="regex"),
        pytest.param({"attribute": "name", "op": "not_regex", "value": "^[ab]"}, ["cy", "dee"], id="not-regex"),
        pytest.param({"attribute": "plan", "op": "in", "value": ["free", "Pro"]}, ["bob", "dee"], id="in"),
        pytest.param({"attribute": "plan", "op": "not_in", "value": ["pro"]}, ["bob", "dee"], id="not-in"),
        pytest.param({"attribute": "beta", "op": "is_set"}, ["ada", "bob"], id="is-set"),
        pytest.param({"attribute": "beta", "op": "is_not_set"}, ["cy", "dee"], id="is-not-set"),
        pytest.param({"attribute": "signed_up", "op": "after", "value": "2026-01-01"}, ["ada", "bob"], id="date-after"),
        pytest.param({"attribute": "signed_up", "op": "before", "value": "2026-03-01T11:00:00Z"}, ["ada", "bob", "cy"], id="date-offsets"),
        pytest.param({"attribute": "signed_up", "op": "lte", "value": "2025-12-31"}, ["cy"], id="date-lte"),
        pytest.param({"or": [{"attribute": "plan", "op": "equals", "value": "free"}, {"attribute": "beta", "op": "equals", "value": True}]},
                     ["ada", "bob"], id="or"),
        pytest.param({"and": [{"attribute": "plan", "op": "equals", "value": "pro"}, {"not": {"attribute": "beta", "op": "is_set"}}]},
                     ["cy"], id="and-not"),
        pytest.param({"did": "Purchase"}, ["ada", "bob", "cy"], id="did"),
        pytest.param({"did": "Purchase", "min_count": 2}, ["ada"], id="did-twice"),
        pytest.param({"did": "Purchase", "after": "-7d"}, ["ada", "bob", "cy"], id="did-recently"),
        pytest.param({"did": "Purchase", "before": "last 7 days"}, ["ada"], id="did-long-ago"),
        pytest.param({"did": "Purchase", "where": {"property": "currency", "op": "equals", "value": "USD"}}, ["cy"], id="did-where"),
        pytest.param({"not": {"did": "Purchase"}}, ["dee"], id="did-not"),
    ],
)
def test_person_filters(api, shop, document, expected):
    assert persons(api, document) == expected


def test_which_persons_spent_over_100_and_first_purchased_after_a_date(api, shop):
    # "first purchase after D" = purchased, and never purchased before D.
    document = {
        "and": [
            {"attribute": "total_spend", "op": "gt", "value": 100},
            {"did": "Purchase"},
            {"not": {"did": "Purchase", "before": at(10)}},
        ]
    }
    assert persons(api, document) == ["cy"]
    # The same question when the site keeps the first purchase time as an attribute (set_once).
    api.post("/api/persons/attributes", json={"distinct_id": "u-ada", "set_once": {"first_purchase_at": at(30)}})
    api.post("/api/persons/attributes", json={"distinct_id": "u-cy", "set_once": {"first_purchase_at": at(3)}})
    by_attribute = {
        "and": [
            {"attribute": "total_spend", "op": "gt", "value": 100},
            {"attribute": "first_purchase_at", "op": "after", "value": at(10)},
        ]
    }
    assert persons(api, by_attribute) == ["cy"]


def test_event_filters_by_property_and_by_the_person(api, shop):
    def events(body):
        response = api.post("/api/events/query", json=body)
        assert response.status_code == 200, response.text
        return [(e["person"]["display_name"], e["properties"].get("amount")) for e in response.json()["results"]]

    assert events({"events": ["Purchase"], "filter": {"property": "amount", "op": "gte", "value": 100}}) == [
        ("bob", 100), ("cy", 120.5), ("ada", 200)
    ]
    assert events({"events": ["Purchase"], "filter": {"attribute": "plan", "op": "equals", "value": "pro"}, "after": "-5d"}) == [
        ("ada", 50), ("cy", 120.5)
    ]
    ada = api.get("/api/persons", params={"distinct_id": "c-ada"}).json()
    assert events({"person_id": ada["id"], "events": ["Purchase"]}) == [("ada", 50), ("ada", 200)]
    assert events({"filter": {"property": "currency", "op": "in", "value": ["USD"]}}) == [("cy", 120.5)]


@pytest.mark.parametrize(
    ("document", "path", "reason"),
    [
        pytest.param({"attribute": "plan", "op": "equalz", "value": "x"}, "filter.op", "Input should be 'equals'", id="unknown-op"),
        pytest.param({"and": [{"attribute": "a", "op": "is_set"}, {"plan": "pro"}]}, "filter.and[1]",
                     "exactly one of the keys attribute, property, did", id="no-kind"),
        pytest.param({"attribute": "total_spend", "op": "gt", "value": "lots"}, "filter.value", "needs a number or a time", id="gt-text"),
        pytest.param({"attribute": "a", "op": "in", "value": []}, "filter.value", "non-empty list", id="empty-in"),
        pytest.param({"or": [{"attribute": "a", "op": "regex", "value": "(a+)+$"}]}, "filter.or[0].value", "nested quantifiers",
                     id="catastrophic-regex"),
        pytest.param({"attribute": "a", "op": "regex", "value": "("}, "filter.value", "does not compile", id="broken-regex"),
        pytest.param({"did": "x", "after": "the other day"}, "filter.after", "is not an ISO-8601 time", id="bad-time"),
        pytest.param({"did": "x", "where": {"attribute": "plan", "op": "is_set"}}, "filter.where", "only property conditions",
                     id="attribute-in-where"),
        pytest.param({"and": [{"property": "$browser", "op": "is_set"}]}, "filter.and[0].property",
                     "persons have attributes, not event properties", id="property-on-persons"),
        pytest.param({"segment": 99}, "filter.segment", "no saved segment has id 99", id="missing-segment"),
        pytest.param({"attribute": "a", "op": "is_set", "colour": "red"}, "filter.colour", "Extra inputs", id="typo"),
    ],
)
def test_bad_filters_are_400s_with_a_path_and_a_reason(api, document, path, reason):
    problems = bad_request(api.post("/api/persons/query", json={"filter": document}))
    assert problems[0][0] == path
    assert reason in problems[0][1]


def test_user_input_never_reaches_the_sql_text(api, send):
    hostile = "plan') OR 1=1; DROP TABLE persons; --"
    send(identify("u-1", "c-1", at(1), set={hostile: "x'); DELETE FROM events; --", "plan": "pro"}))
    assert persons(api, {"attribute": hostile, "op": "equals", "value": "x'); DELETE FROM events; --"}) == ["u-1"]
    assert persons(api, {"attribute": "plan", "op": "equals", "value": "' OR '1'='1"}) == []
    assert persons(api, {"did": "x' OR 1=1 --"}) == []
    events = api.post("/api/events/query", json={"filter": {"property": "a.b') OR ('1", "op": "is_set"}})
    assert events.status_code == 200 and events.json()["results"] == []
    assert len(api.post("/api/persons/query", json={}).json()["results"]) == 1


def test_a_regex_that_runs_too_long_stops_the_query_with_a_400(api, send, monkeypatch):
    from idstitch.query import patterns

    # SQLite spends the budget in its regex function; PostgreSQL's statement limit is at least
    # 1 ms, so the query has ~20 ms of regex work there.
    send(*[identify(f"u-{i}", f"c-{i}", at(1), set={"bio": "a" * 1999}) for i in range(200)])
    monkeypatch.setattr(patterns, "DEFAULT_BUDGET_SECONDS", 0.0)
    problems = bad_request(api.post("/api/persons/query", json={"filter": {"attribute": "bio", "op": "regex", "value": "a*b"}}))
    assert problems[0][0] == "filter" and "spent more than" in problems[0][1]


def test_times_compare_as_sqlite_reads_them_on_both_stores(api, send):
    send(
        identify("u-rolled", "c-1", at(1), set={"at": "2026-02-30"}),  # rolls over to 2026-03-02
        identify("u-east", "c-2", at(1), set={"at": "2026-03-01T05:00:00+14:00"}),  # 2026-02-28T15:00Z
        identify("u-clock", "c-3", at(1), set={"at": "12:30"}),  # a time of 2000-01-01
        identify("u-julian", "c-4", at(1), set={"at": "2461101.0"}),  # a Julian day: 2026-03-01T12:00Z
        identify("u-words", "c-5", at(1), set={"at": "soon"}),
        identify("u-number", "c-6", at(1), set={"at": 2461101.0}),  # a number is not a time
    )
    assert persons(api, {"attribute": "at", "op": "after", "value": "2026-03-01"}) == ["u-julian", "u-rolled"]
    assert persons(api, {"attribute": "at", "op": "before", "value": "2026-03-01"}) == ["u-clock", "u-east"]


def test_a_regex_means_what_python_says_on_both_stores(api, send):
    send(
        identify("u-1", "c-1", at(1), set={"bio": "ends with a newline\n", "nick": "JOSÉ"}),
        identify("u-2", "c-2", at(1), set={"bio": "two\nlines", "nick": "josé"}),
        identify("u-3", "c-3", at(1), set={"bio": "foo-bar", "nick": "Jo"}),
    )
    assert persons(api, {"attribute": "bio", "op": "regex", "value": "newline$"}) == ["u-1"]  # $ before a last newline
    assert persons(api, {"attribute": "bio", "op": "regex", "value": "two.lines"}) == []  # . stops at a newline
    assert persons(api, {"attribute": "bio", "op": "regex", "value": "(?s)two.lines"}) == ["u-2"]
    assert persons(api, {"attribute": "nick", "op": "regex", "value": "(?i)^josé$"}) == ["u-1", "u-2"]
    assert persons(api, {"attribute": "bio", "op": "regex", "value": r"\bbar\b"}) == ["u-3"]
    assert persons(api, {"attribute": "nick", "op": "regex", "value": r"^\w+$"}) == ["u-1", "u-2", "u-3"]


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        pytest.param("(?>a)b", "atomic groups", id="atomic-group"),
        pytest.param("(?=a)a", "lookahead and lookbehind", id="lookahead"),
        pytest.param(r"(a)\1", "back-references", id="back-reference"),
        pytest.param("a{256}", "at most 255 times", id="count"),
    ],
)
def test_a_pattern_a_linear_engine_cannot_run_is_a_400_naming_it_on_both_stores(api, send, pattern, reason):
    send(identify("u-1", "c-1", at(1), set={"code": "ab"}))
    response = api.post("/api/persons/query", json={"filter": {"attribute": "code", "op": "regex", "value": pattern}})
    [(path, said)] = bad_request(response)
    assert path == "filter.value" and reason in said and repr(pattern) in said


def test_a_regex_that_runs_too_long_on_the_segments_page_is_a_400_page(client, send, monkeypatch):
    from idstitch.query import patterns
    from tests.ui.conftest import sign_in

    send(*[identify(f"u-{i}", f"c-{i}", at(1), set={"bio": "a" * 1999}) for i in range(200)])
    assert sign_in(client).status_code == 303
    monkeypatch.setattr(patterns, "DEFAULT_BUDGET_SECONDS", 0.0)
    document = '{"attribute": "bio", "op": "regex", "value": "a*b"}'
    page = client.get("/ui/segments", params={"action": "json", "filter_json": document})
    assert page.status_code == 400 and "spent more than" in page.text


def test_persons_query_pages_with_a_cursor(api, send):
    send(*[identify(f"u-{i}", f"c-{i}", at(10 - i), set={"plan": "pro" if i % 2 else "free"}) for i in range(7)])
    seen, cursor = [], None
    while True:
        body = {"filter": {"attribute": "plan", "op": "equals", "value": "pro"}, "limit": 2}
        if cursor:
            body["cursor"] = cursor
        page = api.post("/api/persons/query", json=body).json()
        seen += [p["display_name"] for p in page["results"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == ["u-5", "u-3", "u-1"]
