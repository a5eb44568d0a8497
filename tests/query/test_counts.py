"""Counts over time: unique persons, events and new persons, broken down and filtered."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.query.conftest import at, bad_request, identify, track

pytestmark = pytest.mark.both_stores


def count(api, **body):
    response = api.post("/api/counts", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def totals(result) -> dict:
    return {s["breakdown"]: s["total"] for s in result["series"]}


@pytest.fixture
def signups(send):
    """Sign-ups over the last two weeks with plans; ada signs up twice (a retry), eve long ago."""
    people = [("ada", "pro", 1), ("bob", "free", 2), ("cy", "pro", 3), ("dee", "team", 5), ("fay", "free", 6),
              ("gus", "pro", 9), ("eve", "free", 12)]
    send(*[identify(f"u-{name}", f"c-{name}", at(days), set={"plan": plan}) for name, plan, days in people])
    # Ada's two sign-ups at noon and 1 pm yesterday (UTC): on one day whatever the time of the run.
    noon = (datetime.now(timezone.utc) - timedelta(days=1)).replace(hour=12, minute=0, second=0, microsecond=0)
    send(*[track(f"u-{name}", "Signed up", at(days, hours=-1), properties={"source": "ads" if days % 2 else "seo"})
           for name, _, days in people if name != "ada"],
         track("u-ada", "Signed up", noon.strftime("%Y-%m-%dT%H:%M:%SZ"), properties={"source": "ads"}),
         track("u-ada", "Signed up", (noon + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"), properties={"source": "ads"}))
    send(track("c-nobody", "Viewed pricing", at(1)))


def test_how_many_unique_users_per_plan_signed_up_last_week(api, signups):
    result = count(api, measure="persons", events=["Signed up"], after="-7d", interval="day",
                   breakdown={"attribute": "plan"})
    assert totals(result) == {"pro": 2, "free": 2, "team": 1}
    assert result["total"] == 5
    assert len(result["periods"]) in (7, 8)  # today's partial day included
    pro = next(s for s in result["series"] if s["breakdown"] == "pro")
    assert sum(pro["counts"]) == 2  # ada counted once on her day despite two sign-up events


def test_event_counts_by_property_and_week(api, signups):
    result = count(api, measure="events", events=["Signed up"], interval=None, breakdown={"property": "source"})
    assert totals(result) == {"ads": 5, "seo": 3}
    assert result["periods"] == [""]
    weekly = count(api, measure="events", events=["Signed up"], interval="week", after="-14d")
    periods = [datetime.fromisoformat(p) for p in weekly["periods"]]
    assert all(p.weekday() == 0 for p in periods)
    assert sum(weekly["series"][0]["counts"]) == 8 == weekly["total"]


def test_new_persons_per_month_with_a_filter(api, signups):
    result = count(api, measure="new_persons", interval="month", breakdown={"attribute": "plan"},
                   filter={"attribute": "plan", "op": "not_equals", "value": "team"})
    assert totals(result) == {"pro": 3, "free": 3, None: 1}  # c-nobody has no plan
    assert all(p.endswith("-01") for p in result["periods"])


def test_counts_fill_empty_days_and_keep_the_biggest_breakdowns(api, signups):
    start = (datetime.now(timezone.utc) - timedelta(days=20)).date()
    result = count(api, measure="persons", events=["Signed up"], after=start.isoformat(), interval="day",
                   breakdown={"attribute": "plan"}, breakdown_limit=1)
    assert result["periods"][0] == start.isoformat()
    assert len(result["periods"]) == 21
    assert result["truncated"] is True and [s["breakdown"] for s in result["series"]] == ["free"]
    assert result["total"] == 7


def test_counts_with_a_saved_segment(api, signups):
    segment = api.post("/api/segments", json={"name": "Pro", "filter": {"attribute": "plan", "op": "equals", "value": "pro"}}).json()
    result = count(api, measure="persons", events=["Signed up"], interval=None, segment_id=segment["id"])
    assert result["total"] == 3


@pytest.mark.parametrize(
    ("body", "path"),
    [
        pytest.param({"measure": "visits"}, "measure", id="measure"),
        pytest.param({"interval": "hour"}, "interval", id="interval"),
        pytest.param({"breakdown": {"attribute": "a", "property": "b"}}, "breakdown", id="two-breakdowns"),
        pytest.param({"measure": "new_persons", "breakdown": {"property": "b"}}, "breakdown.property", id="person-property"),
        pytest.param({"after": "-1d", "before": "-2d"}, "after", id="backwards-range"),
        pytest.param({"after": "2000-01-01", "interval": "day"}, "interval", id="too-many-periods"),
        pytest.param({"filter": {"did": "x", "min_count": 0}}, "filter.min_count", id="filter"),
    ],
)
def test_bad_count_requests_name_the_field(api, body, path):
    assert bad_request(api.post("/api/counts", json=body))[0][0] == path
