"""Functions over truckcount's types that write the database (reads are in ``query``).

Every function takes the engine from ``open_database`` first and runs in one transaction of its
own. Crossings count only once their run is ``complete``, so a crashed or still running run never
shows up half written, and rerunning a ``run_id`` replaces what it wrote before.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Connection, Engine, Row, delete, insert, select
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError

from truckcount.storage.database import StorageError, UnknownCameraError, describe_error
from truckcount.storage.models import CameraRow, CoverageRow, CrossingRow, RunRow, RunStatus
from truckcount.types import Crossing, RunInfo

log = logging.getLogger(__name__)


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
    available_at: datetime | None


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
        "available_at": None,
    }
    with engine.begin() as conn:
        _camera_timezone(conn, run.camera_id)
        seen = conn.scalar(select(RunRow.run_id).where(RunRow.run_id == run.run_id))
        if seen is None:
            conn.execute(insert(RunRow).values(run_id=run.run_id, **values))
            return
        gone = conn.execute(delete(CrossingRow).where(CrossingRow.run_id == run.run_id)).rowcount
        conn.execute(delete(CoverageRow).where(CoverageRow.run_id == run.run_id))
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

    A complete run's ``available_at`` is set to now: as-of queries see it from then on.

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
    now = datetime.now(UTC)
    values = {
        "status": final.value,
        "finished_at": now,
        "available_at": now if final is RunStatus.COMPLETE else None,
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


def add_coverage(
    engine: Engine,
    run_id: str,
    start: datetime,
    end: datetime,
    frames_analysed: int,
    frames_dropped: int = 0,
    gap_reason: str | None = None,
) -> None:
    """Record that a running run analysed the video from ``start`` to ``end`` (aware).

    Buckets overlapping no coverage read NULL; ``gap_reason`` says why frames were lost.

    Raises:
        StorageError: unknown run, a run no longer running, naive or reversed times, or negative
            frame counts.
    """
    _check_media_span(start, end)
    if frames_analysed < 0 or frames_dropped < 0:
        raise StorageError(
            f"frame counts: expected >= 0, got {frames_analysed} analysed, {frames_dropped} dropped"
        )
    with engine.begin() as conn:
        run = conn.execute(
            select(RunRow.camera_id, RunRow.status).where(RunRow.run_id == run_id)
        ).first()
        if run is None:
            raise StorageError(f"coverage for unknown run {run_id!r}; call begin_run first")
        if run.status != RunStatus.RUNNING.value:
            raise StorageError(f"run {run_id!r} is {run.status}; it takes no more coverage")
        values = {
            "run_id": run_id,
            "camera_id": run.camera_id,
            "start": start,
            "end": end,
            "frames_analysed": frames_analysed,
            "frames_dropped": frames_dropped,
            "gap_reason": gap_reason,
        }
        conn.execute(insert(CoverageRow).values(values))


# --- reading ------------------------------------------------------------------------------------


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
