"""Event time: parsing what clients send, correcting their clock skew, one stored text form."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

Now = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def parse_time(value: object) -> datetime | None:
    """An ISO-8601 string, or epoch milliseconds (posthog-js `_`, `sent_at` query values), as UTC.

    Returns None for anything else, times outside the years 1 to 9999 in UTC included
    (`0001-01-01T00:00:00+23:59`); naive times are taken as UTC.
    """
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("Z") or text.endswith("z"):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return _parse_epoch(text)
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=timezone.utc)
        try:
            return parsed.astimezone(timezone.utc)
        except OverflowError:
            return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _from_epoch(value)
    return None


def _parse_epoch(text: str) -> datetime | None:
    try:
        return _from_epoch(float(text))
    except ValueError:
        return None


def _from_epoch(number: float) -> datetime | None:
    # Values below 1e11 are seconds (PostHog ignores those in `_`; as a timestamp they are fine).
    try:
        seconds = number / 1000 if number > 1e11 else number  # an int past 1e308 overflows here
        return datetime.fromtimestamp(seconds, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


# How far a client's clock (plus the request's time in flight) may be from ours and be trusted as
# it is. Beyond twice this the skew is corrected in full; in between, the correction grows
# steadily from nothing, so it never jumps (see `skew_correction`).
SKEW_TOLERANCE = timedelta(seconds=10)


def event_time(timestamp: datetime | None, sent_at: datetime | None, received_at: datetime) -> datetime:
    """The event's time on the server's clock (PostHog: `now - (sent_at - timestamp)`).

    A client whose clock is wrong by an hour sends both `timestamp` and `sent_at` wrong by the
    same hour; the difference between them is the true age of the event.
    """
    if timestamp is None:
        return received_at
    if sent_at is None:
        return timestamp
    return timestamp + skew_correction(received_at - sent_at)


def skew_correction(offset: timedelta) -> timedelta:
    """What to add to a request's timestamps, given `received_at - sent_at` of the request.

    PostHog and Segment add the whole offset, which also holds the request's time in flight, so
    two requests of one client get different corrections and two writes made microseconds apart
    in consecutive requests can swap order (a later `set` then loses to an earlier one). Within
    the tolerance nothing is added: a client with a good clock keeps its own order exactly. Past
    twice the tolerance the whole offset is added (a device an hour or a year off is fixed).
    Between the two the correction ramps up continuously, so no offset makes it jump: requests
    whose offsets differ by d get corrections that differ by at most 2d. Events of one request
    all get the same correction, so their order is always kept.
    """
    size = abs(offset)
    if size <= SKEW_TOLERANCE:
        return timedelta(0)
    if size >= 2 * SKEW_TOLERANCE:
        return offset
    ramp = 2 * (size - SKEW_TOLERANCE)
    return ramp if offset > timedelta(0) else -ramp


def format_time(moment: datetime) -> str:
    """The one stored form: UTC, microseconds, `Z`; sorts as text in time order."""
    if moment.tzinfo is not timezone.utc:
        moment = moment.astimezone(timezone.utc)
    # Cheaper than strftime, and this runs for every stored event and attribute.
    return moment.isoformat(timespec="microseconds")[:-6] + "Z"


def stored_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
