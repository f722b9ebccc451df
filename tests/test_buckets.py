"""Specification of the rollup: local hours and days, coverage, and NULL versus 0."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from truckcount.aggregator.buckets import SeriesKey, Span, bucket_edges, rollup
from truckcount.types import Bucket, BucketWidth, Crossing, Direction, ValidationError, VehicleClass

NY = ZoneInfo("America/New_York")
DAILY, HOURLY = BucketWidth.DAILY, BucketWidth.HOURLY
GATE = SeriesKey("cam1", "gate", VehicleClass.TRUCK, "north")


def local(text: str) -> datetime:
    """``"2024-03-10 01:30"`` in New York (first pass of an ambiguous time) -> aware UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=NY).astimezone(UTC)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def crossing(ts: datetime, track_id: int = 1) -> Crossing:
    return Crossing(
        "cam1", "gate", track_id, VehicleClass.TRUCK, Direction.IN, "north", ts, 0.9, "m1", "run"
    )


def whole_days(first: date, last: date) -> Span:
    """Coverage from local midnight of ``first`` to local midnight after ``last``."""
    edges = bucket_edges(first, last, DAILY, NY)
    return Span(edges[0], edges[-1])


def counts(buckets: list[Bucket]) -> list[int | None]:
    return [b.count for b in buckets]


# New York: 2024-03-10 springs forward (23 h), 2024-11-03 falls back (25 h).
DAY_LENGTHS = [
    (date(2024, 3, 9), 24),
    (date(2024, 3, 10), 23),
    (date(2024, 3, 11), 24),
    (date(2024, 11, 3), 25),
    (date(2024, 11, 4), 24),
]


@pytest.mark.parametrize(("day", "hours"), DAY_LENGTHS)
def test_a_local_day_lasts_from_midnight_to_midnight(day: date, hours: int) -> None:
    [bucket] = rollup(
        [], [whole_days(day, day)], width=DAILY, zone=NY, days=(day, day), series=[GATE]
    )
    assert bucket.end - bucket.start == timedelta(hours=hours)
    assert bucket.start.astimezone(NY).hour == 0 and bucket.end.astimezone(NY).hour == 0
    assert (bucket.count, bucket.covered_s) == (0, hours * 3600)


@pytest.mark.parametrize(("day", "hours"), DAY_LENGTHS)
def test_a_local_day_has_as_many_hourly_buckets_as_hours(day: date, hours: int) -> None:
    buckets = rollup(
        [], [whole_days(day, day)], width=HOURLY, zone=NY, days=(day, day), series=[GATE]
    )
    assert len(buckets) == hours
    assert all(b.end - b.start == timedelta(hours=1) and b.covered_s == 3600 for b in buckets)


# (crossing, local day, local hour of its bucket, index of its hourly bucket in the day)
PLACEMENT = [
    (utc("2024-03-10 04:59"), "2024-03-09", 23, 23),  # 23:59 EST
    (utc("2024-03-10 05:00"), "2024-03-10", 0, 0),  # midnight belongs to the new day
    (utc("2024-03-10 06:59"), "2024-03-10", 1, 1),  # 01:59 EST, just before the jump
    (utc("2024-03-10 07:00"), "2024-03-10", 3, 2),  # 03:00 EDT: hour 2 does not exist
    (utc("2024-03-11 03:59"), "2024-03-10", 23, 22),  # 23:59 EDT, last of 23 hours
    (utc("2024-11-03 05:30"), "2024-11-03", 1, 1),  # 01:30 EDT, first pass
    (utc("2024-11-03 06:30"), "2024-11-03", 1, 2),  # 01:30 EST, second pass: its own bucket
    (utc("2024-11-04 04:59"), "2024-11-03", 23, 24),  # 23:59 EST, last of 25 hours
]


@pytest.mark.parametrize(("ts", "day", "hour", "index"), PLACEMENT)
def test_crossing_lands_in_its_local_day_and_hour(
    ts: datetime, day: str, hour: int, index: int
) -> None:
    d = date.fromisoformat(day)
    cover = [whole_days(d, d)]
    daily = rollup([crossing(ts)], cover, width=DAILY, zone=NY, days=(d, d))
    assert counts(daily) == [1]
    hourly = rollup([crossing(ts)], cover, width=HOURLY, zone=NY, days=(d, d))
    [hit] = [i for i, b in enumerate(hourly) if b.count]
    assert hit == index
    assert hourly[hit].start.astimezone(NY).hour == hour


@pytest.mark.parametrize(
    ("spans", "expected_counts", "expected_covered"),
    [
        ([], [None, None, None], [0, 0, 0]),  # nothing analysed: unknown, never 0
        ([("10:00", "13:00")], [2, 0, 1], [3600, 3600, 3600]),  # a quiet hour reads 0
        ([("10:00", "10:30")], [2, None, None], [1800, 0, 0]),  # partial: covered_s says so
        ([("10:15", "11:15")], [2, 0, None], [2700, 900, 0]),
        ([("10:00", "11:00"), ("10:30", "11:30")], [2, 0, None], [3600, 1800, 0]),  # merged once
        ([("12:00", "13:00")], [None, None, 1], [0, 0, 3600]),
    ],
)
def test_coverage_decides_null_zero_and_partial(
    spans: list[tuple[str, str]], expected_counts: list[int | None], expected_covered: list[float]
) -> None:
    day = date(2024, 5, 1)
    cover = [Span(local(f"2024-05-01 {a}"), local(f"2024-05-01 {b}")) for a, b in spans]
    seen = [
        crossing(local("2024-05-01 10:20"), 1),
        crossing(local("2024-05-01 10:25"), 2),
        crossing(local("2024-05-01 12:59"), 3),
    ]
    buckets = rollup(seen, cover, width=HOURLY, zone=NY, days=(day, day))
    window = [b for b in buckets if 10 <= b.start.astimezone(NY).hour <= 12]
    assert counts(window) == expected_counts
    assert [b.covered_s for b in window] == expected_covered


def test_series_without_crossings_read_zero_where_covered() -> None:
    day = date(2024, 5, 1)
    other = SeriesKey("cam1", "exit", VehicleClass.TRUCK, "south")
    buckets = rollup(
        [crossing(local("2024-05-01 09:00"))],
        [whole_days(day, day)],
        width=DAILY,
        zone=NY,
        days=(day, day),
        series=[other],
    )
    assert [(b.line_id, b.count) for b in buckets] == [("exit", 0), ("gate", 1)]


def test_crossings_outside_the_range_are_ignored() -> None:
    day = date(2024, 5, 1)
    late = crossing(local("2024-05-02 00:00"))
    buckets = rollup([late], [whole_days(day, day)], width=DAILY, zone=NY, days=(day, day))
    assert counts(buckets) == [0]


def test_reversed_ranges_are_rejected() -> None:
    with pytest.raises(ValidationError, match="before first day"):
        bucket_edges(date(2024, 5, 2), date(2024, 5, 1), DAILY, NY)
    with pytest.raises(ValidationError, match="before start"):
        Span(utc("2024-05-01 10:00"), utc("2024-05-01 09:00"))


def test_a_bucket_with_coverage_needs_a_count() -> None:
    with pytest.raises(ValidationError, match="expected a number"):
        Bucket(
            "cam1",
            "gate",
            VehicleClass.TRUCK,
            "north",
            utc("2024-05-01 00:00"),
            utc("2024-05-02 00:00"),
            DAILY,
            None,
            10.0,
        )
