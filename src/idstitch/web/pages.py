"""Rendering the UI's templates (Jinja2, autoescaped) and the filters they use."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from functools import cache
from importlib import resources
from typing import Any

import msgspec
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FunctionLoader, StrictUndefined

from idstitch.clock import stored_time
from idstitch.web import charts
from idstitch.web.descriptions import change_sentences, outcome_description, warning_description

STATIC_FILES = {"ui.css": "text/css; charset=utf-8", "ui.js": "text/javascript; charset=utf-8"}


@cache
def static_file(name: str) -> tuple[bytes, str]:
    """One of the UI's static files and a digest of it (its URL changes whenever it does)."""
    body = resources.files("idstitch").joinpath("web", "static", name).read_bytes()
    return body, hashlib.sha256(body).hexdigest()[:16]


def static_url(name: str) -> str:
    return f"/ui/static/{name}?v={static_file(name)[1]}"


def _template(name: str) -> str | None:
    resource = resources.files("idstitch").joinpath("web", "templates", name)
    return resource.read_text(encoding="utf-8") if resource.is_file() else None


def when(text: str | None) -> str:
    """A stored time as `2026-11-03 14:02` (UTC)."""
    if not text:
        return "—"
    try:
        return stored_time(text).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return text


def ago(text: str | None, now: datetime | None = None) -> str:
    """A stored time as `3 hours ago`, `in 2 days`, or `just now`."""
    if not text:
        return ""
    try:
        moment = stored_time(text)
    except ValueError:
        return ""
    seconds = ((now or datetime.now(timezone.utc)) - moment).total_seconds()
    future, seconds = seconds < 0, abs(seconds)
    for size, unit in ((86400 * 365, "year"), (86400 * 30, "month"), (86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            count = int(seconds // size)
            words = f"{count} {unit}{'s' if count != 1 else ''}"
            return f"in {words}" if future else f"{words} ago"
    return "just now"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def initials(name: str) -> str:
    words = [w for w in name.replace("@", " ").replace(".", " ").split() if w[:1].isalnum()]
    return "".join(w[0] for w in words[:2]).upper() or "?"


def as_json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def number(value: int | float | None) -> str:
    return "—" if value is None else f"{value:,}"


@cache
def environment() -> Environment:
    env = Environment(
        loader=FunctionLoader(_template),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=when, ago=ago, duration=duration, initials=initials, as_json=as_json, number=number,
        outcome=outcome_description, warning_description=warning_description,
        period=charts.period_label, change_sentences=change_sentences,
    )
    env.globals["warning_sparkline"] = lambda group: charts.sparkline(
        f"{group['type']} per day, last {len(group['daily'])} days", group["daily"], group["days"]
    )
    return env


def render(name: str, context: dict[str, Any], *, status_code: int = 200) -> HTMLResponse:
    """`name` rendered; the layout's stylesheet and script URLs are added to the context."""
    defaults = {"css": static_url("ui.css"), "script": static_url("ui.js"), "notice": "", "error": None,
                "csrf": "", "csrf_field": "csrf_token", "nav": ""}
    html = environment().get_template(name).render(**{**defaults, **context})
    return HTMLResponse(html, status_code=status_code)
