"""Counts over time: events, unique persons, or new persons per day, week or month (UTC), broken
down by a person attribute or an event property, with the same filters as the lists.

    events        events that match, counted where they happened
    persons       unique persons with a matching event (a person counts once per period, and
                  once in the total however many periods they appear in)
    new_persons   persons created in the period (their first event, or their import time)

A breakdown by `attribute` uses the person's value now (as PostHog's person properties on
persons-on-events off); a breakdown by `property` uses the value on each event. A person with the
attribute unset is counted under `null`. Periods with nothing in them are listed with 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Literal

import msgspec

from idstitch.clock import format_time
from idstitch.query.compiler import Sql
from idstitch.query.filters import FilterError
from idstitch.store.connection import Connection
from idstitch.store.dialects import Dialect

Measure = Literal["events", "persons", "new_persons"]
Interval = Literal["day", "week", "month"]
MAX_PERIODS = 3660

_decode = msgspec.json.Decoder().decode


def _bucket(dialect: Dialect, interval: Interval | None, column: str) -> str:
    if interval == "day":
        return f"substr({column}, 1, 10)"
    if interval == "week":  # the Monday of the week (ISO weeks)
        return dialect.week_start(f"substr({column}, 1, 10)")
    if interval == "month":
        return f"substr({column}, 1, 7) || '-01'"
    return "''"


@dataclass(frozen=True, slots=True)
class CountSpec:
    measure: Measure = "persons"
    events: tuple[str, ...] = ()
    interval: Interval | None = "day"
    after: datetime | None = None
    before: datetime | None = None
    breakdown_attribute: str | None = None
    breakdown_property: str | None = None
    breakdown_limit: int = 25


def count(conn: Connection, project_id: int, spec: CountSpec, where: Sql, now: datetime) -> dict[str, Any]:
    """Counts per period and breakdown value; `where` was compiled for persons (new_persons) or
    for events (the other measures)."""
    if spec.measure == "new_persons":
        if spec.events:
            raise FilterError([("events", "new_persons counts persons by creation time; it takes no event names")])
        if spec.breakdown_property:
            raise FilterError([("breakdown.property", "persons have attributes, not event properties")])
    if spec.after and spec.before and spec.after >= spec.before:
        raise FilterError([("after", "`after` must be earlier than `before`")])
    grouped, totals, overall = _run(conn, project_id, spec, where)
    periods = _periods(spec, grouped, now)
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0] or ""))
    kept = ranked[: spec.breakdown_limit]
    series = []
    for value, total in kept:
        counts = grouped.get(value, {})
        series.append(
            {
                "breakdown": _decode(value) if value is not None else None,
                "counts": [counts.get(period, 0) for period in periods],
                "total": total,
            }
        )
    return {
        "measure": spec.measure,
        "interval": spec.interval,
        "periods": periods,
        "series": series,
        "total": overall,
        "truncated": len(ranked) > len(kept),
    }


def _run(
    conn: Connection, project_id: int, spec: CountSpec, where: Sql
) -> tuple[dict[str | None, dict[str, int]], dict[str | None, int], int]:
    dialect = conn.dialect
    bucket_of_event = _bucket(dialect, spec.interval, "e.timestamp")
    conditions = [Sql("e.project_id = ?", (project_id,))]
    if spec.events:
        conditions.append(Sql(f"e.event IN ({','.join('?' * len(spec.events))})", spec.events))
    if spec.after:
        conditions.append(Sql("e.timestamp >= ?", (format_time(spec.after),)))
    if spec.before:
        conditions.append(Sql("e.timestamp < ?", (format_time(spec.before),)))
    conditions.append(where)
    event_where = Sql(" AND ".join(c.text for c in conditions), tuple(v for c in conditions for v in c.params))
    events_from = f"FROM events e LEFT JOIN distinct_ids d ON {dialect.same_distinct_id('e', 'd')}"
    attribute = spec.breakdown_attribute

    if spec.measure == "events":
        if spec.breakdown_property:
            breakdown, joined = dialect.json_text_at("e.properties", spec.breakdown_property), Sql("")
        elif attribute:
            breakdown = Sql("b.value")
            joined = Sql(" LEFT JOIN person_attributes b ON b.person_id = d.person_id AND b.key = ? AND b.kind != 'unset'", (attribute,))
        else:
            breakdown, joined = Sql("NULL"), Sql("")
        rows = conn.execute(
            f"SELECT {bucket_of_event}, {breakdown.text}, count(*) {events_from}{joined.text}"
            f" WHERE {event_where.text} GROUP BY 1, 2",
            (*breakdown.params, *joined.params, *event_where.params),
        ).fetchall()
        grouped, totals = _fold(rows)
        return grouped, totals, sum(totals.values())

    if spec.measure == "persons":
        # One pass: the distinct (period, person, value) rows, with the attribute read once per
        # row of that (small) set; periods, totals and the overall count are unions of persons.
        value = dialect.json_text_at("e.properties", spec.breakdown_property) if spec.breakdown_property else Sql("NULL")
        inner = (
            f"SELECT DISTINCT {bucket_of_event} AS period, d.person_id AS person_id, {value.text} AS value"
            f" {events_from} WHERE d.person_id IS NOT NULL AND {event_where.text}"
        )
        if attribute:
            sql = (
                # `AS value`: x has a `value` too, and ClickHouse would name this one `b.value`.
                f"SELECT x.period, x.person_id, b.value AS value FROM ({inner}) x LEFT JOIN person_attributes b"
                " ON b.person_id = x.person_id AND b.key = ? AND b.kind != 'unset'"
            )
            params: tuple[Any, ...] = (*value.params, *event_where.params, attribute)
        else:
            sql, params = inner, (*value.params, *event_where.params)
        if dialect.grouping_sets:
            return _persons_grouped(conn, sql, params)
        periods: dict[str | None, dict[str, int]] = {}
        members: dict[str | None, set[str]] = {}
        everyone: set[str] = set()
        for period, person_id, found in conn.execute(sql, params):
            counts = periods.setdefault(found, {})
            counts[period] = counts.get(period, 0) + 1
            members.setdefault(found, set()).add(person_id)
            everyone.add(person_id)
        return periods, {found: len(ids) for found, ids in members.items()}, len(everyone)

    # new_persons
    conditions = [Sql("p.project_id = ?", (project_id,))]
    if spec.after:
        conditions.append(Sql("p.created_at >= ?", (format_time(spec.after),)))
    if spec.before:
        conditions.append(Sql("p.created_at < ?", (format_time(spec.before),)))
    conditions.append(where)
    person_where = Sql(" AND ".join(c.text for c in conditions), tuple(v for c in conditions for v in c.params))
    bucket_of_person = _bucket(dialect, spec.interval, "p.created_at")
    rows = conn.execute(
        f"SELECT {bucket_of_person}, NULL, count(*) FROM persons p WHERE {person_where.text} GROUP BY 1",
        person_where.params,
    ).fetchall()
    if attribute:
        # Read only the persons that have the attribute (person_attributes_by_key), then count
        # the others as everyone minus them: a lookup per person would cost a B-tree search each.
        having = conn.execute(
            f"SELECT {bucket_of_person}, b.value, count(*) FROM person_attributes b {dialect.join_each('persons', 'p', 'p.id = b.person_id')}"
            f" WHERE b.key = ? AND b.kind != 'unset' AND {person_where.text} GROUP BY 1, 2",
            (attribute, *person_where.params),
        ).fetchall()
        without = {period: number for period, _, number in rows}
        for period, _, number in having:
            without[period] -= number
        rows = having + [(period, None, number) for period, number in without.items() if number]
    grouped, totals = _fold(rows)
    return grouped, totals, sum(totals.values())


def _persons_grouped(
    conn: Connection, distinct_rows: str, params: tuple[Any, ...]
) -> tuple[dict[str | None, dict[str, int]], dict[str | None, int], int]:
    """The persons measure in the engine: distinct persons per (period, value), per value and
    overall, in one pass over the distinct (period, person, value) rows."""
    periods: dict[str | None, dict[str, int]] = {}
    totals: dict[str | None, int] = {}
    overall = 0
    for level, period, found, number in conn.execute(
        "SELECT grouping(period, value), period, value, count(DISTINCT person_id)"
        f" FROM ({distinct_rows}) AS x GROUP BY GROUPING SETS ((period, value), (value), ())",
        params,
    ):
        if level == 0:
            periods.setdefault(found, {})[period] = number
        elif level == 2:
            totals[found] = number
        else:
            overall = number
    return periods, totals, overall


def _fold(rows: list[Any]) -> tuple[dict[str | None, dict[str, int]], dict[str | None, int]]:
    grouped: dict[str | None, dict[str, int]] = {}
    totals: dict[str | None, int] = {}
    for period, value, number in rows:
        grouped.setdefault(value, {})[period] = number
        totals[value] = totals.get(value, 0) + number
    return grouped, totals


def _periods(spec: CountSpec, grouped: dict[str | None, dict[str, int]], now: datetime) -> list[str]:
    if spec.interval is None:
        return [""] if grouped else []
    seen = sorted({period for counts in grouped.values() for period in counts})
    start = _period_of(spec.interval, spec.after) if spec.after else (seen[0] if seen else None)
    if start is None:
        return []
    end_moment = _just_before(spec.before) if spec.before else now
    end = max(_period_of(spec.interval, end_moment), seen[-1] if seen else "")
    periods = []
    current = date.fromisoformat(start)
    last = date.fromisoformat(end)
    while current <= last:
        periods.append(current.isoformat())
        if len(periods) > MAX_PERIODS:
            raise FilterError([("interval", f"the range covers more than {MAX_PERIODS} {spec.interval}s; use a longer interval or a shorter range")])
        try:
            current = _next(spec.interval, current)
        except OverflowError:  # that was the calendar's last period (9999-12-31)
            break
    return periods


_TICK = timedelta(microseconds=1)
_FIRST_MOMENT = datetime.min.replace(tzinfo=timezone.utc)


def _just_before(moment: datetime) -> datetime:
    """The last moment before `moment`; nothing is before the calendar's first, so itself."""
    return moment - _TICK if moment > _FIRST_MOMENT else moment


def _period_of(interval: Interval, moment: datetime) -> str:
    day = moment.astimezone(timezone.utc).date()
    if interval == "week":
        day -= timedelta(days=day.weekday())
    elif interval == "month":
        day = day.replace(day=1)
    return day.isoformat()


def _next(interval: Interval, current: date) -> date:
    if interval == "day":
        return current + timedelta(days=1)
    if interval == "week":
        return current + timedelta(days=7)
    return (current.replace(day=28) + timedelta(days=4)).replace(day=1)
