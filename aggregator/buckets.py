"""Rollups: crossings and coverage spans -> hourly or daily buckets in the camera's local time.

A bucket no analysed video touched has ``count=None`` (unknown), never 0; a bucket partly covered
carries its covered seconds, so a reader can tell a quiet hour from a missing one. Daily buckets
run from local midnight to the next local midnight: 23 h and 25 h long on DST change days.
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from truckcount.types import Bucket, BucketWidth, Crossing, ValidationError, VehicleClass


@dataclass(frozen=True)
class Span:
    """A stretch of analysed video, ``[start, end)``, as aware datetimes."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.utcoffset() is None or self.end.utcoffset() is None:
            raise ValidationError(f"Span: expected aware datetimes, got {self.start!r}")
        if self.end < self.start:
            raise ValidationError(f"Span: end {self.end} is before start {self.start}")


@dataclass(frozen=True, order=True)
class SeriesKey:
    """One time series: what a bucket counts, apart from its time."""

    camera_id: str
    line_id: str
    class_name: VehicleClass
    direction_name: str


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """UTC instant at which ``day`` starts in ``zone``."""
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


def bucket_edges(first: date, last: date, width: BucketWidth, zone: ZoneInfo) -> list[datetime]:
    """UTC edges of the buckets covering the local days ``first`` to ``last`` inclusive.

    Daily edges are local midnights. Hourly edges step one real hour from the first local
    midnight, so the repeated hour of a fall-back night is two buckets and the skipped hour of a
    spring-forward night is none.
    """
    if last < first:
        raise ValidationError(f"bucket range: last day {last} is before first day {first}")
    days = (last - first).days + 1
    midnights = [local_midnight(first + timedelta(days=i), zone) for i in range(days + 1)]
    if BucketWidth(width) is BucketWidth.DAILY:
        return midnights
    stop = midnights[-1]
    edges = [midnights[0]]
    while edges[-1] < stop:
        edges.append(edges[-1] + timedelta(hours=1))
    return edges


def merge_spans(spans: Iterable[Span]) -> list[tuple[datetime, datetime]]:
    """Union of spans as sorted, disjoint UTC intervals (overlaps are covered once)."""
    merged: list[tuple[datetime, datetime]] = []
    for span in sorted(spans, key=lambda s: s.start):
        start, end = span.start.astimezone(UTC), span.end.astimezone(UTC)
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def covered_seconds(
    edges: Sequence[datetime], spans: Sequence[tuple[datetime, datetime]]
) -> list[float]:
    """Seconds of each bucket ``[edges[i], edges[i+1])`` inside the merged ``spans``."""
    return [
        sum(max(0.0, (min(hi, end) - max(lo, start)).total_seconds()) for start, end in spans)
        for lo, hi in itertools.pairwise(edges)
    ]


def rollup(
    crossings: Iterable[Crossing],
    coverage: Iterable[Span],
    *,
    width: BucketWidth,
    zone: ZoneInfo,
    days: tuple[date, date],
    series: Iterable[SeriesKey] = (),
) -> list[Bucket]:
    """Count crossings per series and bucket over the local days ``days`` (inclusive).

    Args:
        crossings: crossings of one camera; those outside the range are ignored.
        coverage: spans of analysed video of that camera.
        width: hourly or daily buckets.
        zone: the camera's time zone, which decides local hours and days.
        days: first and last local day.
        series: series to report even without crossings (a quiet line reads 0, not absent);
            every series that has crossings is reported too.

    Returns:
        Buckets ordered by series, then time. ``count`` is None where ``covered_s`` is 0.
    """
    edges = bucket_edges(days[0], days[1], width, zone)
    covered = covered_seconds(edges, merge_spans(coverage))
    tally: Counter[tuple[SeriesKey, int]] = Counter()
    keys = set(series)
    for c in crossings:
        key = SeriesKey(c.camera_id, c.line_id, c.class_name, c.direction_name)
        keys.add(key)
        index = _bucket_index(edges, c.ts.astimezone(UTC))
        if index is not None:
            tally[(key, index)] += 1
    return [
        Bucket(
            key.camera_id,
            key.line_id,
            key.class_name,
            key.direction_name,
            edges[i],
            edges[i + 1],
            BucketWidth(width),
            tally[(key, i)] if covered[i] > 0 else None,
            covered[i],
        )
        for key in sorted(keys)
        for i in range(len(edges) - 1)
    ]


def _bucket_index(edges: Sequence[datetime], ts: datetime) -> int | None:
    if ts < edges[0] or ts >= edges[-1]:
        return None
    return bisect.bisect_right(edges, ts) - 1
