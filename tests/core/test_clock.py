"""Event time: parsing, clock-skew correction and the stored text form (identity-rules.md §4)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from idstitch.clock import SKEW_TOLERANCE, event_time, format_time, parse_time, skew_correction, stored_time

UTC = timezone.utc
NOON = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "value, parsed",
    [
        pytest.param("2026-03-01T12:00:00Z", NOON, id="iso-z"),
        pytest.param("2026-03-01T12:00:00z", NOON, id="iso-lower-z"),
        pytest.param("2026-03-01T14:00:00+02:00", NOON, id="iso-offset-to-utc"),
        pytest.param("2026-03-01T12:00:00", NOON, id="naive-is-utc"),
        pytest.param(" 2026-03-01T12:00:00.250Z ", NOON + timedelta(milliseconds=250), id="spaces-and-fraction"),
        pytest.param(NOON.timestamp() * 1000, NOON, id="epoch-millis"),
        pytest.param(int(NOON.timestamp()), NOON, id="epoch-seconds"),
        pytest.param(str(int(NOON.timestamp() * 1000)), NOON, id="epoch-millis-text"),
        pytest.param("yesterday", None, id="text"),
        pytest.param(True, None, id="boolean"),
        pytest.param(None, None, id="null"),
        pytest.param(float("nan"), None, id="nan"),
        pytest.param(1e30, None, id="out-of-range"),
    ],
)
def test_parse_time_reads_iso_and_epoch_values_as_utc(value: object, parsed: datetime | None) -> None:
    assert parse_time(value) == parsed


def test_event_time_corrects_the_clients_skew_with_sent_at() -> None:
    # The client's clock is an hour fast: both its timestamp and its sent_at are an hour ahead.
    received = NOON
    timestamp = NOON + timedelta(hours=1) - timedelta(seconds=30)
    sent_at = NOON + timedelta(hours=1)
    assert event_time(timestamp, sent_at, received) == NOON - timedelta(seconds=30)


@pytest.mark.parametrize(
    "timestamp, sent_at, expected",
    [
        pytest.param(None, NOON, NOON + timedelta(minutes=5), id="no-timestamp-is-received-at"),
        pytest.param(NOON, None, NOON, id="no-sent-at-trusts-timestamp"),
    ],
)
def test_event_time_without_both_times(timestamp, sent_at, expected) -> None:
    assert event_time(timestamp, sent_at, NOON + timedelta(minutes=5)) == expected


def test_format_time_is_utc_microseconds_z_and_round_trips() -> None:
    moment = datetime(2026, 3, 1, 14, 0, 0, 5, tzinfo=timezone(timedelta(hours=2)))
    assert format_time(moment) == "2026-03-01T12:00:00.000005Z"
    assert stored_time(format_time(moment)) == moment


def test_format_time_sorts_as_text_in_time_order() -> None:
    moments = [NOON + timedelta(microseconds=n) for n in (0, 1, 999_999, 1_000_000)] + [NOON - timedelta(days=400)]
    assert sorted(moments, key=format_time) == sorted(moments)


@pytest.mark.parametrize(
    "offset, correction",
    [
        pytest.param(timedelta(seconds=0), timedelta(0), id="none"),
        pytest.param(timedelta(seconds=3), timedelta(0), id="in-flight-within-tolerance"),
        pytest.param(-SKEW_TOLERANCE, timedelta(0), id="at-the-tolerance"),
        pytest.param(SKEW_TOLERANCE * 1.5, SKEW_TOLERANCE, id="half-way-up-the-ramp"),
        pytest.param(-SKEW_TOLERANCE * 2, -SKEW_TOLERANCE * 2, id="in-full-from-twice-the-tolerance"),
        pytest.param(timedelta(days=365), timedelta(days=365), id="a-year"),
    ],
)
def test_skew_is_corrected_only_past_the_tolerance_and_never_jumps(offset, correction) -> None:
    assert skew_correction(offset) == correction


def test_skew_correction_is_continuous_and_never_reorders_consecutive_requests() -> None:
    # Offsets microseconds apart (two requests of one client) give corrections microseconds apart,
    # and a larger offset never gives a smaller correction.
    step = timedelta(microseconds=1)
    offsets = [SKEW_TOLERANCE * k / 50 for k in range(-150, 151)]
    for offset in offsets:
        assert abs(skew_correction(offset + step) - skew_correction(offset)) <= 2 * step
        assert skew_correction(offset + step) >= skew_correction(offset)
