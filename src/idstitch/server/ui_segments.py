"""The segment builder: condition rows (or a filter typed as JSON) into the query API's filter
document, the persons it keeps, a chart of unique users (or events, or new persons) over time or
by an attribute, and saved segments. Building and charting are GETs, so a chart has a URL;
saving and deleting are CSRF-checked POSTs through the writer, audited as the API does.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from idstitch.analytics.feeder import Feeder
from idstitch.errors import RequestError
from idstitch.ingest.pipeline import WriteContext
from idstitch.query import counts, people
from idstitch.query import segments as saved
from idstitch.query.compiler import EVENTS, PERSONS, Compiler, where_clause
from idstitch.query.filters import FilterError, FilterNode, parse_filter
from idstitch.server import ui_forms
from idstitch.server.analytics_reads import answer_on_copy
from idstitch.server.ui_auth import UIRoute, require_form, require_key, state_of
from idstitch.server.ui_forms import KINDS, OPS, FormError, Row
from idstitch.server.ui_pages import actor, moment, page, positive_id, problems, query, redirect, write
from idstitch.store import summaries
from idstitch.store.connection import Connection
from idstitch.store.projects import SecretKey
from idstitch.web import charts

router = APIRouter(route_class=UIRoute, include_in_schema=False)

MIN_ROWS = 3
PREVIEW = 10
COUNT_CAP = 10_000
BREAKDOWN_LIMIT = 8
MEASURES = {"new_persons": "New users", "persons": "Unique users", "events": "Events"}
INTERVALS = {"day": "per day", "week": "per week", "month": "per month", "total": "in total"}


def _chart_options(params: Any) -> dict[str, str]:
    return {
        # New users by default: counted from the persons index, cheap on a large project.
        "measure": params.get("measure") if params.get("measure") in MEASURES else "new_persons",
        "events": params.get("events", "").strip(),
        "interval": params.get("interval", "day") if params.get("interval") in INTERVALS else "day",
        "after": params.get("after", "-30d").strip(),
        "before": params.get("before", "").strip(),
        "breakdown": params.get("breakdown", "").strip(),
    }


def _builder_state(params: Any, loaded: dict[str, Any] | None) -> tuple[list[Row], str, str, dict[str, Any] | None]:
    """(rows, match, filter JSON text, filter document) from the query string or a saved segment."""
    action = params.get("action", "")
    if loaded is not None and not action:
        document = loaded["filter"]
        shown = ui_forms.rows_of(document)
        rows, match = shown if shown else ([], "all")
        return rows, match, ui_forms.pretty(document), document
    if action == "json":
        document, _ = ui_forms.parse_filter_text(params.get("filter_json", ""))
        shown = ui_forms.rows_of(document)
        rows, match = shown if shown else ([], "all")
        return rows, match, params.get("filter_json", ""), document
    count = min(ui_forms.MAX_ROWS, int(params.get("rows", "0")) if params.get("rows", "").isdigit() else 0)
    rows = ui_forms.rows_from(params, count)
    if action == "add" and len(rows) < ui_forms.MAX_ROWS:
        rows.append(Row())
    match = "any" if params.get("match") == "any" else "all"
    document = ui_forms.filter_document(rows, match)
    return rows, match, ui_forms.pretty(document) if document is not None else "", document


def _series_label(value: Any) -> str:
    if value is None:
        return "(not set)"
    return value if isinstance(value, str) else ui_forms.encode(value)


def _chart(result: dict[str, Any], options: dict[str, str]) -> dict[str, Any]:
    measure = MEASURES[options["measure"]]
    what = f"{measure} ({options['events']})" if options["events"] and options["measure"] != "new_persons" else measure
    interval = None if options["interval"] == "total" else options["interval"]
    palette = charts.colours(len(result["series"]))
    by = options["breakdown"]
    series = [
        charts.Series(_series_label(s["breakdown"]) if by else "", tuple(s["counts"]), colour)
        for s, colour in zip(result["series"], palette)
    ]
    labels = [charts.period_label(p, interval) for p in result["periods"]]
    drawn: dict[str, Any] = {"title": f"{what} {INTERVALS[options['interval']]}" + (f" by {by}" if by else ""),
                             "labels": labels, "series": series, "total": result["total"], "truncated": result["truncated"],
                             "columns": None, "bars": None}
    if interval is not None:
        drawn["columns"] = charts.column_chart("chart-time", drawn["title"], labels, series)
    if by or interval is None:
        rows = [(s.label or measure, total["total"], s.colour) for s, total in zip(series, result["series"])]
        drawn["bars"] = charts.bar_chart("chart-breakdown", f"{what} by {by}" if by else what, rows)
    return drawn


@router.get("/ui/segments")
async def segments_page(request: Request) -> Response:
    key = await require_key(request)
    params = request.query_params
    options = _chart_options(params)
    loaded_id = positive_id(params.get("segment_id", ""))
    state = state_of(request)
    now = state.now()

    def run(conn: Connection, compiler: Compiler) -> dict[str, Any]:
        data: dict[str, Any] = {
            "saved": saved.list_segments(conn, key.project_id),
            "event_names": summaries.event_names(conn, key.project_id),
            "attribute_keys": summaries.recent_attribute_keys(conn, key.project_id),
            "loaded": saved.get_segment(conn, key.project_id, loaded_id) if loaded_id else None,
            "chart": None, "persons": [], "matching": None, "persons_note": None, "error": None, "answered_by": None,
        }
        try:
            rows, match, filter_text, document = _builder_state(params, data["loaded"])
            data.update(rows=rows, match=match, filter_text=filter_text, document=document)
            node: FilterNode | None = parse_filter(document) if document is not None else None
            _fill(conn, state.analytics, key, node, options, now, data)
        except (FilterError, FormError, RequestError) as error:
            data["error"] = problems(error)
            data.setdefault("rows", ui_forms.rows_from(params, min(ui_forms.MAX_ROWS, _int(params.get("rows", "0")))))
            data.setdefault("match", "all")
            data.setdefault("filter_text", params.get("filter_json", ""))
            data.setdefault("document", None)
        return data

    try:
        data = await query(request, key, run)
    except FilterError as error:  # the query ran out of its time budget (a regex, or a statement)
        return page(request, key, "error.html", "segments", status_code=400, title="Query stopped", message=problems(error))
    rows = list(data.pop("rows"))
    while len(rows) < MIN_ROWS:
        rows.append(Row())
    return page(request, key, "segments.html", "segments", status_code=400 if data["error"] else 200,
                title="Segments", rows=rows, kinds=KINDS, ops=OPS, options=options, measures=MEASURES,
                intervals=INTERVALS, filter_json=ui_forms.encode(data["document"]) if data["document"] is not None else "",
                **data)


def _int(text: str) -> int:
    return int(text) if text.isdigit() else 0


def _fill(conn: Connection, feeder: Feeder | None, key: SecretKey, node: FilterNode | None,
          options: dict[str, str], now: Any, data: dict[str, Any]) -> None:
    """The chart, and the persons the filter keeps (a preview and a capped count), answered by
    the analytics copy when it has caught up (`answered_by`)."""

    spec = counts.CountSpec(
        measure=options["measure"],  # type: ignore[arg-type]
        events=tuple(e.strip() for e in options["events"].split(",") if e.strip()) if options["measure"] != "new_persons" else (),
        interval=None if options["interval"] == "total" else options["interval"],  # type: ignore[arg-type]
        after=moment(options["after"], "after", now),
        before=moment(options["before"], "before", now),
        breakdown_attribute=options["breakdown"] or None,
        breakdown_limit=BREAKDOWN_LIMIT,
    )
    target = PERSONS if options["measure"] == "new_persons" else EVENTS

    def answers(on: Connection, compiler: Compiler) -> tuple[tuple[list[dict[str, Any]], int] | FilterError, dict[str, Any]]:
        # One engine for both, and a `did` condition's persons computed once for both.
        with compiler.sharing_person_sets():
            try:
                members: tuple[list[dict[str, Any]], int] | FilterError = people.newest_and_count(
                    on, key.project_id, where_clause(compiler, PERSONS, node, None), PREVIEW, COUNT_CAP, details=conn
                )
            except FilterError as error:  # a condition persons cannot have: the chart of events is shown
                members = error
            return members, counts.count(on, key.project_id, spec, where_clause(compiler, target, node, None), now)

    (members, result), data["answered_by"] = answer_on_copy(feeder, conn, key.project_id, now, answers)
    if isinstance(members, FilterError):
        data["persons_note"] = "The persons list is not shown: " + problems(members)
    else:
        data["persons"], data["matching"] = members
    data["chart"] = _chart(result, options)


@router.post("/ui/segments")
async def segment_save(request: Request) -> Response:
    key, form = await require_form(request)
    name, description = form.get("name").strip(), form.get("description").strip()
    state = state_of(request)
    try:
        if not name or len(name) > 200 or len(description) > 2000:
            raise FormError("A segment needs a name of 1 to 200 characters (and a description of at most 2,000)")
        _, node = ui_forms.parse_filter_text(form.get("filter_json"))
        if node is None:
            raise FormError("Build a filter with at least one condition before saving it")
    except (FilterError, FormError) as error:
        return page(request, key, "error.html", "segments", status_code=400, title="Segment not saved", message=problems(error))

    def store(context: WriteContext) -> dict[str, Any]:
        created = saved.create_segment(context.conn, key.project_id, name, description, node, state.now())
        context.persons(key.project_id).audit(actor(key), "create_segment", {"id": created["id"], "name": name})
        return created

    try:
        created = await write(request, store)
    except (RequestError, FilterError) as error:
        return page(request, key, "error.html", "segments", status_code=409, title="Segment not saved", message=problems(error))
    chart = {name: form.get(f"chart_{name}") for name in _chart_options({}) if form.get(f"chart_{name}")}
    return redirect("/ui/segments?" + urlencode({"segment_id": created["id"], **chart, "notice": "Segment saved."}))


@router.post("/ui/segments/{number}/delete")
async def segment_delete(request: Request, number: str) -> Response:
    key, _ = await require_form(request)
    found = positive_id(number)
    if found is None:
        return page(request, key, "error.html", "segments", status_code=404, title="Not found", message=f"No segment {number!r}.")

    def remove(context: WriteContext) -> None:
        removed = saved.delete_segment(context.conn, key.project_id, found)
        context.persons(key.project_id).audit(actor(key), "delete_segment", {"id": found, "name": removed["name"]})

    try:
        await write(request, remove)
    except RequestError as error:
        return page(request, key, "error.html", "segments", status_code=409, title="Segment not deleted", message=str(error))
    return redirect("/ui/segments?notice=Segment+deleted.")

