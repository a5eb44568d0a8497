"""Moments in queries: ISO-8601 times, or times relative to now.

Relative forms (case-insensitive; a month is 30 days and a year 365, so "-1m" is never ambiguous):

    -7d   -12h   -2w   -3m   -1y        7 days ago   2 weeks ago
    last 7 days   last 24 hours          now   today   yesterday   (midnight UTC for the last two)
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

_UNITS = {
    "min": timedelta(minutes=1), "minute": timedelta(minutes=1),
    "h": timedelta(hours=1), "hour": timedelta(hours=1),
    "d": timedelta(days=1), "day": timedelta(days=1),
    "w": timedelta(weeks=1), "week": timedelta(weeks=1),
    "m": timedelta(days=30), "month": timedelta(days=30),
    "y": timedelta(days=365), "year": timedelta(days=365),
}
_RELATIVE = re.compile(r"(?:-\s*(\d{1,6})\s*([a-z]+)|(?:last\s+)?(\d{1,6})\s+([a-z]+)(?:\s+ago)?)", re.IGNORECASE)
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}([T ].*)?")
_ABSOLUTE_HELP = "an ISO-8601 time (2026-11-01, 2026-11-01T10:00:00Z) or a relative one (-7d, 7 days ago, last 7 days)"


def parse_moment(text: object, now: datetime) -> datetime:
    """The UTC time `text` names, relative to `now`; ValueError saying what is accepted otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"expected {_ABSOLUTE_HELP}, got {type(text).__name__} {text!r}")
    cleaned = text.strip().lower()
    if cleaned == "now":
        return now
    if cleaned in ("today", "yesterday"):
        midnight = now.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        return midnight - timedelta(days=1 if cleaned == "yesterday" else 0)
    relative = _RELATIVE.fullmatch(cleaned)
    if relative:
        count, unit = relative.group(1) or relative.group(3), relative.group(2) or relative.group(4)
        step = _UNITS.get(unit) or _UNITS.get(unit.removesuffix("s"))
        if step is None:
            raise ValueError(f"unknown time unit {unit!r} in {text!r}; use one of min, h, d, w, m, y (or hours, days, ...)")
        try:
            return now - int(count) * step
        except OverflowError:
            raise ValueError(f"{text!r} is before the year 1") from None
    if _ISO.fullmatch(text.strip()):
        candidate = text.strip()
        if candidate.endswith(("Z", "z")):
            candidate = candidate[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(candidate)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is None:
                return parsed.replace(tzinfo=timezone.utc)
            try:
                return parsed.astimezone(timezone.utc)
            except OverflowError:  # 0001-01-01T00:00:00+23:59 is in year 0 in UTC
                raise ValueError(f"{text!r} is outside the years 1 to 9999 in UTC") from None
    raise ValueError(f"{text!r} is not {_ABSOLUTE_HELP}")


def julian_day(moment: datetime) -> float:
    """SQLite's `julianday()` of a moment, so stored ISO texts in any offset compare as times."""
    return moment.timestamp() / 86400.0 + 2440587.5
