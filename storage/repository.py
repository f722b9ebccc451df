"""Functions over truckcount's types that write the database (reads are in ``query``).

Every function takes the engine from ``open_database`` first and runs in one transaction of its
own. Each ``begin_run`` starts a new *attempt* at a logical run; crossings and coverage belong to
the attempt and count only once it is ``complete``. So a crashed or still running attempt never
shows up half written, and rerunning a ``run_id`` replaces the earlier results atomically when
the rerun completes, while a crashed rerun leaves them in place.
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

from sqlalchemy import Connection, Engine, Row, insert, select
from sqlalchemy import update as sql_update
from sqlalchemy.dialects import postgresql, sqlite

from truckcount.storage.attempts import new_attempt_id, running_attempts, target_attempt
from truckcount.storage.bulk import insert_crossings
from truckcount.storage.database import StorageError, UnknownCameraError
from truckcount.storage.models import CameraRow, CoverageRow, RunRow, RunStatus
from truckcount.types import Crossing, RunInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRecord:
    """A stored attempt at a run: its identity, provenance and outcome; datetimes are aware UTC."""

    attempt_id: str
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
            # Several processes (machines of a backfill) may register the camera at once.
            row = {"id": camera_id, "timezone": timezone, "created_at": datetime.now(UTC)}
            dialect = {"postgresql": postgresql, "sqlite": sqlite}.get(conn.dialect.name)
            if dialect is None:
                conn.execute(insert(CameraRow).values(row))
            else:
                conn.execute(dialect.insert(CameraRow).values(row).on_conflict_do_nothing())
            stored = conn.scalar(select(CameraRow.timezone).where(CameraRow.id == camera_id))
        if stored != timezone:
            log.warning("camera %s: time zone changes from %s to %s", camera_id, stored, timezone)
            update = sql_update(CameraRow).where(CameraRow.id == camera_id)
            conn.execute(update.values(timezone=timezone))


def begin_run(engine: Engine, run: RunInfo, *, attempt_id: str | None = None) -> str:
    """Record that an attempt at ``run`` starts; returns its attempt id.

    A ``run_id`` seen before gets a new attempt beside the earlier ones: their results stay
    visible until this attempt completes (``finish_run``), and a still running earlier attempt
    is marked failed, since it can no longer complete. Beginning an ``attempt_id`` that is
    already stored does nothing, so a replayed begin is harmless.

    ``run.extra["code_version"]`` is stored as the code version when given, else the installed
    truckcount version.

    Args:
        engine: from ``open_database``.
        run: the logical run.
        attempt_id: the attempt's id; a new one (sortable by time) when None.

    Raises:
        UnknownCameraError: ``ensure_camera`` was not called for ``run.camera_id``.
        StorageError: ``run.started_at`` is naive, or ``attempt_id`` belongs to another run.
    """
    _require_aware(run.started_at, "RunInfo.started_at")
    attempt = attempt_id or new_attempt_id()
    with engine.begin() as conn:
        _camera_timezone(conn, run.camera_id)
        seen = conn.scalar(select(RunRow.run_id).where(RunRow.attempt_id == attempt))
        if seen is not None:
            if seen != run.run_id:
                raise StorageError(
                    f"attempt {attempt!r} belongs to run {seen!r}, not {run.run_id!r}"
                )
            return attempt
        abandoned = conn.execute(
            sql_update(RunRow)
            .where(RunRow.run_id == run.run_id, RunRow.status == RunStatus.RUNNING.value)
            .values(status=RunStatus.FAILED.value, finished_at=datetime.now(UTC))
        ).rowcount
        conn.execute(insert(RunRow).values(_run_values(run, attempt)))
    if abandoned:
        log.warning("run %s: a new attempt abandons %d unfinished one(s)", run.run_id, abandoned)
    return attempt


def add_crossings(
    engine: Engine,
    crossings: Sequence[Crossing],
    *,
    attempt_id: str | None = None,
    replay: bool = False,
) -> int:
    """Insert crossings of running attempts in one transaction; returns how many were written.

    Args:
        engine: from ``open_database``.
        crossings: crossings whose ``run_id`` names their logical run.
        attempt_id: the attempt they belong to; default: the running attempt of each run.
        replay: skip what is already stored, and everything of an attempt that is no longer
            running (its spool was replayed before), instead of raising.

    Raises:
        StorageError: a crossing names an unknown run, a run of another camera or a run that is
            not running, or repeats a (run, line, track) already given or stored.
    """
    if not crossings:
        return 0
    _reject_duplicates(crossings)
    with engine.begin() as conn:
        attempts = running_attempts(conn, crossings, attempt_id, replay=replay)
        return insert_crossings(conn, crossings, attempts, skip_duplicates=replay)


def finish_run(
    engine: Engine,
    run_id: str,
    *,
    status: RunStatus | str,
    frames_analysed: int,
    media_start: datetime | None,
    media_end: datetime | None,
    attempt_id: str | None = None,
    replay: bool = False,
) -> None:
    """Close a running attempt as ``complete`` (its results replace the run's earlier ones) or
    ``failed``.

    Completing is one transaction, so readers see the earlier attempt's results up to that
    instant and this attempt's from then on, never a mix. A complete attempt's ``available_at``
    is set to now: as-of queries see it from then on.

    Args:
        engine: from ``open_database``.
        run_id: a run started with ``begin_run``.
        status: ``complete`` or ``failed``.
        frames_analysed: frames the detector saw.
        media_start: capture time of the first analysed frame (aware), if any.
        media_end: capture time of the last analysed frame (aware), if any.
        attempt_id: the attempt to close; default: the run's running attempt.
        replay: an attempt that is already finished is left as it is instead of raising.

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
        attempt = target_attempt(conn, run_id, attempt_id, replay=replay)
        if attempt is None:
            return
        conn.execute(sql_update(RunRow).where(RunRow.attempt_id == attempt).values(**values))
    log.info(
        "run %s (attempt %s) %s after %d frames", run_id, attempt, final.value, frames_analysed
    )


def add_coverage(
    engine: Engine,
    run_id: str,
    start: datetime,
    end: datetime,
    frames_analysed: int,
    frames_dropped: int = 0,
    gap_reason: str | None = None,
    *,
    attempt_id: str | None = None,
    replay: bool = False,
) -> None:
    """Record that a running attempt analysed the video from ``start`` to ``end`` (aware).

    Buckets overlapping no coverage read NULL; ``gap_reason`` says why frames were lost.
    ``attempt_id`` and ``replay`` work as in ``add_crossings``; a replayed span that is already
    stored (same attempt and start) is skipped.

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
        attempt = target_attempt(conn, run_id, attempt_id, replay=replay, what="coverage")
        if attempt is None:
            return
        stored = select(CoverageRow.id).where(
            CoverageRow.attempt_id == attempt, CoverageRow.start == start
        )
        if replay and conn.scalar(stored) is not None:
            return
        camera_id = conn.scalar(select(RunRow.camera_id).where(RunRow.attempt_id == attempt))
        values = {
            "attempt_id": attempt,
            "run_id": run_id,
            "camera_id": camera_id,
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
    """All run attempts, or those of one camera, oldest start first.

    Raises:
        UnknownCameraError: ``camera_id`` is given and not registered.
    """
    stmt = select(RunRow.__table__).order_by(RunRow.started_at, RunRow.run_id, RunRow.attempt_id)
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


def _run_values(run: RunInfo, attempt_id: str) -> dict[str, object]:
    return {
        "attempt_id": attempt_id,
        "run_id": run.run_id,
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
