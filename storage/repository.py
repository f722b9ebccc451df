"""Functions over truckcount's types that read and write the database.

Every function takes the engine from ``open_database`` first and runs in one transaction of its
own. Crossings count only once their run is ``complete``, so a crashed or still running run never
shows up half written, and rerunning a ``run_id`` replaces what it wrote before.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from importlib import metadata
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Connection, Engine, Row, Select, delete, func, insert, select
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from truckcount.storage.database import StorageError, UnknownCameraError, describe_error
from truckcount.storage.models import CameraRow, CrossingRow, RunRow, RunStatus
from truckcount.types import Crossing, DailyCount, RunInfo, VehicleClass

log = logging.getLogger(__name__)

# Local-day edges are decided exactly in Python; the SQL range only has to contain them, and a
# few hours of slack covers every DST shift.
_EDGE_SLACK = timedelta(hours=3)

SelectT = TypeVar("SelectT", bound=Select[Any])


@dataclass(frozen=True)
class RunRecord:
    """A stored run: its identity, provenance and outcome; datetimes are aware UTC."""

    run_id: str
    camera_id: str
    source: str
    model_version: str
    config_hash: str
    code_version: str
    started_at: datetime
    finished_at: datetime | None
    status: RunStatus
    frames_analysed: int
    media_start: datetime | None
    media_end: datetime | None


# --- writing ------------------------------------------------------------------------------------


def ensure_camera(engine: Engine, camera_id: str, timezone: str) -> None:
    """Register a camera, or update its time zone if it changed.

    Raises:
        StorageError: ``timezone`` is not an IANA time zone.
    """
    _zone(timezone)
    with engine.begin() as conn:
        stored = conn.scalar(select(CameraRow.timezone).where(CameraRow.id == camera_id))
        if stored is None:
            row = {"id": camera_id, "timezone": timezone, "created_at": datetime.now(UTC)}
            conn.execute(insert(CameraRow).values(row))
        elif stored != timezone:
            log.warning("camera %s: time zone changes from %s to %s", camera_id, stored, timezone)
            update = sql_update(CameraRow).where(CameraRow.id == camera_id)
            conn.execute(update.values(timezone=timezone))


def begin_run(engine: Engine, run: RunInfo) -> None:
    """Record that ``run`` starts; a ``run_id`` seen before is reset and its crossings deleted.

    ``run.extra["code_version"]`` is stored as the code version when given, else the installed
    truckcount version.

    Raises:
        UnknownCameraError: ``ensure_camera`` was not called for ``run.camera_id``.
        StorageError: ``run.started_at`` is naive.
    """
    _require_aware(run.started_at, "RunInfo.started_at")
    values = {
        "camera_id": run.camera_id,
        "source": run.source,
        "model_version": run.model_version,
        "config_hash": run.config_hash,
        "code_version": run.extra.get("code_version") or _code_version(),
        "started_at": run.started_at,
        "finished_at": None,
        "status": RunStatus.RUNNING.value,
        "frames_analysed": 0,
        "media_start": None,
        "media_end": None,
    }
    with engine.begin() as conn:
        _camera_timezone(conn, run.camera_id)
        seen = conn.scalar(select(RunRow.run_id).where(RunRow.run_id == run.run_id))
        if seen is None:
            conn.execute(insert(RunRow).values(run_id=run.run_id, **values))
            return
        gone = conn.execute(delete(CrossingRow).where(CrossingRow.run_id == run.run_id)).rowcount
        conn.execute(sql_update(RunRow).where(RunRow.run_id == run.run_id).values(**values))
    log.info("run %s restarts: deleted %d crossings of its earlier attempt", run.run_id, gone)


def add_crossings(engine: Engine, crossings: Sequence[Crossing]) -> int:
    """Insert crossings of running runs in one transaction; returns how many were written.

    Raises:
        StorageError: a crossing names an unknown run, a run of another camera or a run that is
            no longer running, or repeats a (run, line, track) already given or stored.
    """
    if not crossings:
        return 0
    _reject_duplicates(crossings)
    rows = [_crossing_values(c) for c in crossings]
    with engine.begin() as conn:
        _check_runs(conn, crossings)
        try:
            conn.execute(insert(CrossingRow), rows)
        except IntegrityError as exc:
            raise StorageError(f"crossings rejected: {describe_error(exc, engine.url)}") from exc
    return len(rows)


def finish_run(
    engine: Engine,
    run_id: str,
    *,
    status: RunStatus | str,
    frames_analysed: int,
    media_start: datetime | None,
    media_end: datetime | None,
) -> None:
    """Close a running run as ``complete`` (its crossings start counting) or ``failed``.

    Args:
        engine: from ``open_database``.
        run_id: a run started with ``begin_run``.
        status: ``complete`` or ``failed``.
        frames_analysed: frames the detector saw.
        media_start: capture time of the first analysed frame (aware), if any.
        media_end: capture time of the last analysed frame (aware), if any.

    Raises:
        StorageError: unknown or already finished run, or invalid values.
    """
    final = _final_status(status)
    _check_media_span(media_start, media_end)
    if frames_analysed < 0:
        raise StorageError(f"frames_analysed: expected >= 0, got {frames_analysed}")
    values = {
        "status": final.value,
        "finished_at": datetime.now(UTC),
        "frames_analysed": frames_analysed,
        "media_start": media_start,
        "media_end": media_end,
    }
    with engine.begin() as conn:
        current = conn.scalar(select(RunRow.status).where(RunRow.run_id == run_id))
        if current is None:
            raise StorageError(f"unknown run {run_id!r}")
        if current != RunStatus.RUNNING.value:
            raise StorageError(f"run {run_id!r} is already {current}")
        conn.execute(sql_update(RunRow).where(RunRow.run_id == run_id).values(**values))
    log.info("run %s %s after %d frames", run_id, final.value, frames_analysed)


# --- reading ------------------------------------------------------------------------------------


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
        StorageError: unknown time zone, or ``end`` before ``start``.
    """
    if start is not None and end is not None and end < start:
        raise StorageError(f"end {end} is before start {start}")
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


def camera_timezone(engine: Engine, camera_id: str) -> str:
    """The IANA time zone stored for a camera.

    Raises:
        UnknownCameraError: the camera is not registered.
    """
    with engine.connect() as conn:
        return _camera_timezone(conn, camera_id)


def list_runs(engine: Engine, camera_id: str | None = None) -> list[RunRecord]:
    """All runs, or those of one camera, oldest start first.

    Raises:
        UnknownCameraError: ``camera_id`` is given and not registered.
    """
    stmt = select(RunRow.__table__).order_by(RunRow.started_at, RunRow.run_id)
    with engine.connect() as conn:
        if camera_id is not None:
            _camera_timezone(conn, camera_id)
            stmt = stmt.where(RunRow.camera_id == camera_id)
        return [_run_record(row) for row in conn.execute(stmt)]


# --- helpers ------------------------------------------------------------------------------------


def _camera_timezone(conn: Connection, camera_id: str) -> str:
    """The camera's stored time zone; raises ``UnknownCameraError`` if it is not registered."""
    stored = conn.scalar(select(CameraRow.timezone).where(CameraRow.id == camera_id))
    if stored is None:
        known = conn.scalars(select(CameraRow.id).order_by(CameraRow.id)).all()
        raise UnknownCameraError(camera_id, known)
    return stored


def _counted(
    stmt: SelectT, camera_id: str, cls: VehicleClass | None, *, include_unfinished: bool = False
) -> SelectT:
    """Narrow ``stmt`` over crossings to the camera's ones that count.

    They count when their run is complete and is the latest complete run of its source: a
    recording processed again (another model, another start) supersedes the earlier result
    instead of adding to it.
    """
    stmt = stmt.where(CrossingRow.camera_id == camera_id)
    if cls is not None:
        stmt = stmt.where(CrossingRow.class_name == cls.value)
    if not include_unfinished:
        later = aliased(RunRow)
        newer_exists = (
            select(later.run_id)
            .where(later.camera_id == RunRow.camera_id, later.source == RunRow.source)
            .where(later.status == RunStatus.COMPLETE.value)
            .where(later.finished_at > RunRow.finished_at)
            .exists()
        )
        stmt = stmt.join(RunRow, RunRow.run_id == CrossingRow.run_id)
        stmt = stmt.where(RunRow.status == RunStatus.COMPLETE.value, ~newer_exists)
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


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise StorageError(f"unknown IANA time zone {name!r}") from None


def _require_aware(ts: datetime, what: str) -> None:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise StorageError(f"{what}: expected a timezone-aware datetime, got naive {ts!r}")


def _check_media_span(media_start: datetime | None, media_end: datetime | None) -> None:
    if media_start is not None:
        _require_aware(media_start, "media_start")
    if media_end is not None:
        _require_aware(media_end, "media_end")
    if media_start is not None and media_end is not None and media_end < media_start:
        raise StorageError(f"media_end {media_end} is before media_start {media_start}")


def _final_status(status: RunStatus | str) -> RunStatus:
    try:
        final = RunStatus(status)
    except ValueError:
        final = None
    if final not in (RunStatus.COMPLETE, RunStatus.FAILED):
        raise StorageError(f"status: expected 'complete' or 'failed', got {status!r}")
    return final


def _reject_duplicates(crossings: Sequence[Crossing]) -> None:
    seen: set[tuple[str, str, int]] = set()
    for c in crossings:
        key = (c.run_id, c.line_id, int(c.track_id))
        if key in seen:
            raise StorageError(
                f"run {c.run_id!r}: track {c.track_id} crosses line {c.line_id!r} more than once"
            )
        seen.add(key)


def _check_runs(conn: Connection, crossings: Sequence[Crossing]) -> None:
    pairs = sorted({(c.run_id, c.camera_id) for c in crossings})
    stmt = select(RunRow.run_id, RunRow.camera_id, RunRow.status)
    stored = {r.run_id: r for r in conn.execute(stmt.where(RunRow.run_id.in_(p[0] for p in pairs)))}
    for run_id, camera_id in pairs:
        run = stored.get(run_id)
        if run is None:
            raise StorageError(f"crossings for unknown run {run_id!r}; call begin_run first")
        if run.camera_id != camera_id:
            raise StorageError(
                f"crossing of camera {camera_id!r} given for run {run_id!r} "
                f"of camera {run.camera_id!r}"
            )
        if run.status != RunStatus.RUNNING.value:
            raise StorageError(f"run {run_id!r} is {run.status}; it takes no more crossings")


def _crossing_values(c: Crossing) -> dict[str, object]:
    return {
        "run_id": c.run_id,
        "camera_id": c.camera_id,
        "line_id": c.line_id,
        "track_id": int(c.track_id),
        "class_name": c.class_name.value,
        "direction": c.direction.value,
        "direction_name": c.direction_name,
        "ts": c.ts,
        "confidence": float(c.confidence),
        "model_version": c.model_version,
    }


def _run_record(row: Row[Any]) -> RunRecord:
    fields = dict(row._mapping)
    fields["status"] = RunStatus(fields["status"])
    return RunRecord(**fields)


@functools.cache
def _code_version() -> str:
    try:
        return metadata.version("truckcount")
    except metadata.PackageNotFoundError:
        return "unknown"
