"""Reading counts back: daily tallies, and hourly or daily buckets with coverage, vintages and
the share of frames with a truck (``storage.presence``).

A *vintage* is what one processing run of a source says. For each source the visible vintage is
the latest run that is complete and became available (``runs.available_at``) no later than the
query's ``as_of``, optionally restricted to one model version; its coverage and crossings are
read together, so a query never mixes vintages of one source and never looks ahead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, Select, and_, func, or_, select
from sqlalchemy.orm import aliased

from truckcount.aggregator.buckets import SeriesKey, Span, local_midnight, rollup
from truckcount.storage.database import StorageError
from truckcount.storage.models import CoverageRow, CrossingRow, RunRow, RunStatus
from truckcount.storage.presence import stored_slots, with_truck_share
from truckcount.storage.repository import (
    _camera_timezone,
    _require_aware,
    _zone,
    camera_timezone,
)
from truckcount.types import Bucket, BucketWidth, Crossing, DailyCount, Direction, VehicleClass

if TYPE_CHECKING:
    import pandas as pd

# Local-day edges are decided exactly in Python; the SQL range only has to contain them, and a
# few hours of slack covers every DST shift.
_EDGE_SLACK = timedelta(hours=3)
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(2999, 12, 31)
"""The local days a bucket query may name (far dates overflow time-zone arithmetic)."""
MAX_DAYS = {BucketWidth.HOURLY: 366, BucketWidth.DAILY: 100 * 366}
"""The longest range one bucket query may span, per bucket width (keeps an answer bounded)."""

SelectT = TypeVar("SelectT", bound=Select[Any])


def visible_runs(
    camera_id: str, *, as_of: datetime, model_version: str | None = None
) -> Select[tuple[str]]:
    """Subquery of the attempt ids whose results a query at ``as_of`` sees, one per source.

    A rerun of a run is another attempt of the same source, so it replaces the earlier attempt
    from the instant it completed on, and an ``as_of`` before that still sees the earlier one.
    """

    def eligible(run: Any) -> list[Any]:
        rules = [
            run.camera_id == camera_id,
            run.status == RunStatus.COMPLETE.value,
            run.available_at.is_not(None),
            run.available_at <= as_of,
        ]
        if model_version is not None:
            rules.append(run.model_version == model_version)
        return rules

    run, later = aliased(RunRow), aliased(RunRow)
    newer = or_(
        later.available_at > run.available_at,
        and_(later.available_at == run.available_at, later.attempt_id > run.attempt_id),
    )
    newer_exists = (
        select(later.attempt_id).where(*eligible(later), later.source == run.source, newer).exists()
    )
    return select(run.attempt_id).where(*eligible(run), ~newer_exists)


def daily_counts(
    engine: Engine,
    camera_id: str,
    *,
    tz: str | None = None,
    start: date | None = None,
    end: date | None = None,
    class_name: VehicleClass = VehicleClass.TRUCK,
) -> list[DailyCount]:
    """Count crossings of complete runs per local day, line and direction.

    Args:
        engine: from ``open_database``.
        camera_id: a registered camera.
        tz: IANA time zone of the local day; defaults to the camera's stored zone.
        start: first local day to include, or None for no lower bound.
        end: last local day to include (inclusive), or None for no upper bound.
        class_name: the vehicle class to count.

    Returns:
        One ``DailyCount`` per (day, line, direction name) with at least one crossing, ordered
        by day, line and direction name. Days without crossings are absent.

    Raises:
        UnknownCameraError: the camera is not registered.
        StorageError: unknown time zone, ``end`` before ``start``, or a day outside
            ``FIRST_DAY``..``LAST_DAY``.
    """
    if start is not None and end is not None and end < start:
        raise StorageError(f"end {end} is before start {start}")
    _check_bounds(start, end)
    cls = VehicleClass(class_name)
    with engine.connect() as conn:
        zone = _zone(tz or _camera_timezone(conn, camera_id))
        columns = select(CrossingRow.line_id, CrossingRow.direction_name, CrossingRow.ts)
        stmt = _counted(columns, camera_id, cls)
        if start is not None:
            stmt = stmt.where(CrossingRow.ts >= _local_midnight(start, zone) - _EDGE_SLACK)
        if end is not None:
            next_day = _local_midnight(end + timedelta(days=1), zone)
            stmt = stmt.where(CrossingRow.ts < next_day + _EDGE_SLACK)
        rows = conn.execute(stmt).all()
    tally = _tally_local_days(rows, zone, start, end)
    return [
        DailyCount(camera_id, line_id, day.isoformat(), direction_name, cls, n)
        for (day, line_id, direction_name), n in sorted(tally.items())
    ]


def count_crossings(
    engine: Engine,
    camera_id: str,
    class_name: VehicleClass | None = None,
    *,
    include_unfinished: bool = False,
) -> int:
    """Number of stored crossings of a camera, of one class or all.

    Only complete runs count unless ``include_unfinished`` is true.

    Raises:
        UnknownCameraError: the camera is not registered.
    """
    cls = None if class_name is None else VehicleClass(class_name)
    with engine.connect() as conn:
        _camera_timezone(conn, camera_id)
        total = select(func.count()).select_from(CrossingRow)
        stmt = _counted(total, camera_id, cls, include_unfinished=include_unfinished)
        return int(conn.scalar(stmt) or 0)


def bucket_counts(
    engine: Engine,
    camera_id: str,
    *,
    width: BucketWidth | str = BucketWidth.DAILY,
    tz: str | None = None,
    start: date | None = None,
    end: date | None = None,
    line_id: str | None = None,
    class_name: VehicleClass | str = VehicleClass.TRUCK,
    direction_name: str | None = None,
    as_of: datetime | None = None,
    model_version: str | None = None,
    known_series: Iterable[tuple[str, str]] = (),
) -> list[Bucket]:
    """Hourly or daily buckets of one camera, with coverage, as known at ``as_of``.

    Args:
        engine: from ``open_database``.
        camera_id: a registered camera.
        width: ``hourly`` or ``daily`` (local clock hours or local days).
        tz: IANA zone of the local hours and days; defaults to the camera's stored zone.
        start: first local day, or None for the first covered day.
        end: last local day (inclusive), or None for the last covered day.
        line_id: only this line.
        class_name: the vehicle class to count.
        direction_name: only this direction name.
        as_of: aware instant; only runs available by then are read (default: now).
        model_version: only runs of this model version.
        known_series: (line id, direction name) pairs to report even without any stored
            crossing, e.g. the camera's configured lines: a quiet covered bucket then reads 0.

    Returns:
        Buckets per series (line, direction) over the whole range, ordered by series and time;
        ``count`` is None where no analysed video covers the bucket; ``truck_share`` (the
        camera's share of classified frames with a truck) is None where no presence slot of the
        same runs starts in it. Series are the line and direction pairs with any stored crossing
        of the camera, plus (``line_id``, ``direction_name``) when both are given. Empty when
        nothing is covered and the range is open.

    Raises:
        UnknownCameraError: the camera is not registered.
        StorageError: unknown time zone, naive ``as_of``, ``end`` before ``start``, a day
            outside ``FIRST_DAY``..``LAST_DAY``, or a range longer than ``MAX_DAYS``.
    """
    if start is not None and end is not None and end < start:
        raise StorageError(f"end {end} is before start {start}")
    moment = datetime.now(UTC) if as_of is None else as_of
    _require_aware(moment, "as_of")
    cls, size = VehicleClass(class_name), BucketWidth(width)
    with engine.connect() as conn:
        zone = _zone(tz or _camera_timezone(conn, camera_id))
        runs = visible_runs(camera_id, as_of=moment, model_version=model_version)
        cover = select(CoverageRow.start, CoverageRow.end).where(CoverageRow.attempt_id.in_(runs))
        spans = [Span(row.start, row.end) for row in conn.execute(cover)]
        days = _day_range(spans, zone, start, end)
        if days is None:
            return []
        _check_range(days, size)
        lo, hi = local_midnight(days[0], zone), local_midnight(days[1] + timedelta(days=1), zone)
        picked = select(CrossingRow).where(CrossingRow.camera_id == camera_id)
        if line_id is not None:
            picked = picked.where(CrossingRow.line_id == line_id)
        if direction_name is not None:
            picked = picked.where(CrossingRow.direction_name == direction_name)
        # Series are named by every stored crossing: a series unknown to the chosen vintages
        # then reads NULL, not absent. Names only; no count leaks from other runs.
        pairs = picked.with_only_columns(CrossingRow.line_id, CrossingRow.direction_name)
        series = {
            SeriesKey(camera_id, line, cls, direction)
            for line, direction in conn.execute(pairs.distinct())
        }
        if line_id is not None and direction_name is not None:
            series.add(SeriesKey(camera_id, line_id, cls, direction_name))
        series |= {
            SeriesKey(camera_id, line, cls, direction)
            for line, direction in known_series
            if line_id in (None, line) and direction_name in (None, direction)
        }
        in_range = picked.where(
            CrossingRow.attempt_id.in_(runs), CrossingRow.class_name == cls.value
        )
        in_range = in_range.where(CrossingRow.ts >= lo, CrossingRow.ts < hi)
        crossings = [_crossing(row) for row in conn.execute(in_range)]
        slots = stored_slots(conn, camera_id, runs, lo, hi)
    buckets = rollup(crossings, spans, width=size, zone=zone, days=days, series=series)
    return with_truck_share(buckets, slots)


def stored_series(engine: Engine, camera_id: str) -> set[tuple[str, str]]:
    """The (line id, direction name) pairs of every stored crossing of a camera, any run."""
    pairs = select(CrossingRow.line_id, CrossingRow.direction_name).where(
        CrossingRow.camera_id == camera_id
    )
    with engine.connect() as conn:
        return {(line, direction) for line, direction in conn.execute(pairs.distinct())}


def bucket_frame(engine: Engine, camera_id: str, **options: Any) -> pd.DataFrame:
    """``bucket_counts`` as a pandas DataFrame indexed by bucket start in the local zone.

    Takes the keyword arguments of ``bucket_counts``. Columns: ``end`` (local), ``line_id``,
    ``class_name``, ``direction_name``, ``count`` (nullable ``Int64``: ``<NA>`` where nothing was
    covered), ``covered_s`` and ``truck_share`` (float, NaN where no frame was classified).
    """
    import pandas as pd

    buckets = bucket_counts(engine, camera_id, **options)
    zone = options.get("tz") or camera_timezone(engine, camera_id)
    frame = pd.DataFrame(
        {
            "start": pd.to_datetime([b.start for b in buckets], utc=True),
            "end": pd.to_datetime([b.end for b in buckets], utc=True),
            "line_id": [b.line_id for b in buckets],
            "class_name": [b.class_name.value for b in buckets],
            "direction_name": [b.direction_name for b in buckets],
            "count": pd.array([b.count for b in buckets], dtype="Int64"),
            "covered_s": pd.array([b.covered_s for b in buckets], dtype="float64"),
            "truck_share": pd.array(
                [float("nan") if b.truck_share is None else b.truck_share for b in buckets],
                dtype="float64",
            ),
        }
    )
    frame["start"] = frame["start"].dt.tz_convert(zone)
    frame["end"] = frame["end"].dt.tz_convert(zone)
    return frame.set_index("start")


def _day_range(
    spans: Sequence[Span], zone: ZoneInfo, start: date | None, end: date | None
) -> tuple[date, date] | None:
    """The local days to report: the given bounds, open ends closed by the coverage."""
    if start is not None and end is not None:
        return start, end
    if not spans:
        return None
    first = start or min(s.start for s in spans).astimezone(zone).date()
    # A span ending exactly at local midnight does not reach into the next day.
    last = end or (max(s.end for s in spans) - timedelta(microseconds=1)).astimezone(zone).date()
    return (first, last) if last >= first else None


def _check_bounds(*days: date | None) -> None:
    """A ``StorageError`` naming any of ``days`` outside ``FIRST_DAY``..``LAST_DAY``."""
    for day in days:
        if day is not None and not FIRST_DAY <= day <= LAST_DAY:
            raise StorageError(f"day {day}: queries cover {FIRST_DAY} to {LAST_DAY} only")


def _check_range(days: tuple[date, date], size: BucketWidth) -> None:
    """A ``StorageError`` for days outside ``FIRST_DAY``..``LAST_DAY`` or a range that spans
    more than ``MAX_DAYS`` of its bucket width."""
    first, last = days
    _check_bounds(first, last)
    span = (last - first).days + 1
    if span > MAX_DAYS[size]:
        raise StorageError(
            f"{size.value} buckets from {first} to {last} span {span:,} days, more than the "
            f"{MAX_DAYS[size]:,} a query may: ask for a shorter range"
            + (" or daily buckets" if size is BucketWidth.HOURLY else "")
        )


def _crossing(row: Any) -> Crossing:
    return Crossing(
        row.camera_id,
        row.line_id,
        row.track_id,
        VehicleClass(row.class_name),
        Direction(row.direction),
        row.direction_name,
        row.ts,
        row.confidence,
        row.model_version,
        row.run_id,
    )


def _counted(
    stmt: SelectT, camera_id: str, cls: VehicleClass | None, *, include_unfinished: bool = False
) -> SelectT:
    """Narrow ``stmt`` over crossings to the camera's ones that count now.

    They count when their run is the visible vintage of its source: a recording processed again
    (another model, another start) supersedes the earlier result instead of adding to it.
    """
    stmt = stmt.where(CrossingRow.camera_id == camera_id)
    if cls is not None:
        stmt = stmt.where(CrossingRow.class_name == cls.value)
    if not include_unfinished:
        runs = visible_runs(camera_id, as_of=datetime.now(UTC))
        stmt = stmt.where(CrossingRow.attempt_id.in_(runs))
    return stmt


def _tally_local_days(
    rows: Iterable[Sequence[Any]],
    zone: ZoneInfo,
    start: date | None,
    end: date | None,
) -> Counter[tuple[date, str, str]]:
    tally: Counter[tuple[date, str, str]] = Counter()
    for line_id, direction_name, ts in rows:
        day = ts.astimezone(zone).date()
        if (start is None or day >= start) and (end is None or day <= end):
            tally[(day, line_id, direction_name)] += 1
    return tally


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)
