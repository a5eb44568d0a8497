"""Queries at the edges of the calendar (year 1 and 9999): a time outside it is a clear 400, and
events stored at its ends are counted in its first and last periods (issue 17: times at the
edge of the calendar answered 500)."""

from __future__ import annotations

import pytest

from tests.query.conftest import bad_request, track

pytestmark = pytest.mark.both_stores


@pytest.fixture
def ends_of_time(send):
    send(track("first", "edge", "0001-01-01T00:00:00Z"), track("last", "edge", "9999-12-31T23:59:59.999999Z"))


@pytest.mark.parametrize(
    "field, value, reason",
    [
        pytest.param("after", "0001-01-01T00:00:00+23:59", "outside the years 1 to 9999 in UTC", id="year-1-east-of-utc"),
        pytest.param("before", "9999-12-31T23:59:59-23:59", "outside the years 1 to 9999 in UTC", id="year-9999-west-of-utc"),
        pytest.param("after", "-99999y", "before the year 1", id="relative-before-year-1"),
    ],
)
def test_a_time_outside_the_calendar_is_a_400_naming_it(api, field, value, reason):
    assert bad_request(api.post("/api/counts", json={field: value})) == [(field, f"{value!r} is {reason}")]
    where = bad_request(api.post("/api/counts", json={"filter": {"did": "edge", field: value}}))
    assert where == [(f"filter.{field}", f"{value!r} is {reason}")]
    assert bad_request(api.get("/api/sessions", params={field: value})) == [(field, f"{value!r} is {reason}")]


@pytest.mark.parametrize(
    "interval, after, periods",
    [
        pytest.param("day", "9999-12-30", ["9999-12-30", "9999-12-31"], id="day"),
        pytest.param("week", "9999-12-27", ["9999-12-27"], id="week"),
        pytest.param("month", "9999-11-15", ["9999-11-01", "9999-12-01"], id="month"),
    ],
)
@pytest.mark.parametrize("measure", ["events", "persons", "new_persons"])
def test_the_last_period_of_the_calendar_is_counted(api, ends_of_time, measure, interval, after, periods):
    response = api.post("/api/counts", json={"measure": measure, "interval": interval, "after": after})
    assert response.status_code == 200, response.text
    assert response.json()["periods"] == periods
    assert response.json()["total"] == 1


def test_the_first_moment_of_the_calendar_can_end_a_range(api, ends_of_time):
    response = api.post("/api/counts", json={"measure": "events", "before": "0001-01-01T00:00:00Z"})
    assert response.status_code == 200 and response.json()["total"] == 0
    response = api.post("/api/counts", json={"measure": "events", "after": "0001-01-01", "before": "0001-01-02", "interval": "week"})
    assert response.status_code == 200 and (response.json()["periods"], response.json()["total"]) == (["0001-01-01"], 1)
