"""Per-camera status for ``GET /cameras`` and ``truckcount status``: database plus live runtime.

The database says what was analysed and stored (runs, their last frame, today's coverage). A live
camera runtime, when the service runs one, adds what only the running process knows (the newest
frame just read, the current frame rate, reconnects). It plugs in through ``LiveStatus``: any
object with a ``camera_states()`` method returning ``LiveCameraState`` per camera id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, time
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from truckcount.config import AppConfig
from truckcount.storage import (
    RunRecord,
    RunStatus,
    UnknownCameraError,
    bucket_counts,
    camera_timezone,
    list_runs,
)
from truckcount.types import BucketWidth


@dataclass(frozen=True)
class LiveCameraState:
    """What a running live camera reports about itself."""

    camera_id: str
    state: str  # e.g. "streaming", "reconnecting", "stopped"
    last_frame_at: datetime | None
    fps: float | None
    reconnects: int
    frames_dropped: int = 0


class LiveStatus(Protocol):
    """The seam for a live camera runtime: its cameras' current state by camera id."""

    def camera_states(self) -> Mapping[str, LiveCameraState]:
        """Current state of every live camera."""
        ...


@dataclass(frozen=True)
class CameraStatus:
    """Status of one camera; fields the available sources cannot tell are None."""

    camera_id: str
    timezone: str
    state: str  # live state, else "recordings" (has runs) or "idle" (nothing stored)
    last_frame_at: datetime | None
    fps: float | None
    reconnects: int | None
    frames_dropped: int | None
    runs: int
    last_run_status: str | None
    last_run_finished_at: datetime | None
    model_version: str | None
    coverage_today_s: float
    coverage_today_share: float  # of the local day elapsed so far

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe mapping (ISO 8601 times in UTC)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, datetime):
                out[key] = value.astimezone(UTC).isoformat()
        return out


def configured_series(cfg: AppConfig | None, camera_id: str) -> tuple[tuple[str, str], ...]:
    """(line, direction) pairs the config gives the camera; none if it is not configured."""
    cams = [c for c in (cfg.cameras if cfg else ()) if c.id == camera_id]
    return tuple(
        (ln.id, name)
        for c in cams
        for ln in c.lines
        for name in (ln.directions.in_, ln.directions.out)
    )


def camera_ids(engine: Engine, cfg: AppConfig | None) -> list[str]:
    """Configured cameras first (in config order), then any other camera with stored runs."""
    ids = [c.id for c in cfg.cameras] if cfg is not None else []
    ids += sorted({r.camera_id for r in list_runs(engine)} - set(ids))
    return ids


def collect(
    engine: Engine,
    cfg: AppConfig | None,
    live: LiveStatus | None = None,
    now: datetime | None = None,
) -> list[CameraStatus]:
    """Status of every known camera at ``now`` (default: the current time)."""
    moment = now or datetime.now(UTC)
    states = dict(live.camera_states()) if live is not None else {}
    runs_by_camera: dict[str, list[RunRecord]] = {}
    for run in list_runs(engine):
        runs_by_camera.setdefault(run.camera_id, []).append(run)
    return [
        _status(engine, cam, zone_of(engine, cfg, cam), runs_by_camera.get(cam, []), states, moment)
        for cam in camera_ids(engine, cfg)
    ]


def zone_of(engine: Engine, cfg: AppConfig | None, camera_id: str) -> str:
    """The camera's stored time zone, else its configured one, else UTC."""
    try:
        return camera_timezone(engine, camera_id)
    except UnknownCameraError:
        configured = [c.timezone for c in (cfg.cameras if cfg else ()) if c.id == camera_id]
        return configured[0] if configured else "UTC"


def _status(
    engine: Engine,
    camera_id: str,
    zone: str,
    runs: list[RunRecord],
    states: Mapping[str, LiveCameraState],
    now: datetime,
) -> CameraStatus:
    complete = [r for r in runs if r.status is RunStatus.COMPLETE and r.media_end is not None]
    newest = max(complete, key=lambda r: r.media_end or now, default=None)
    last = runs[-1] if runs else None
    covered, share = coverage_today(engine, camera_id, zone, now)
    live = states.get(camera_id)
    return CameraStatus(
        camera_id=camera_id,
        timezone=zone,
        state=live.state if live else ("recordings" if runs else "idle"),
        last_frame_at=_latest(live.last_frame_at if live else None, newest and newest.media_end),
        fps=live.fps if live else _analysed_fps(newest),
        reconnects=live.reconnects if live else None,
        frames_dropped=live.frames_dropped if live else None,
        runs=len(runs),
        last_run_status=last.status.value if last else None,
        last_run_finished_at=last.finished_at if last else None,
        model_version=last.model_version if last else None,
        coverage_today_s=covered,
        coverage_today_share=share,
    )


def coverage_today(engine: Engine, camera_id: str, zone: str, now: datetime) -> tuple[float, float]:
    """Seconds of today's local day covered by analysed video, and their share of the day so far."""
    tz = ZoneInfo(zone)
    today = now.astimezone(tz).date()
    midnight = datetime.combine(today, time(), tzinfo=tz)
    try:
        buckets = bucket_counts(
            engine,
            camera_id,
            width=BucketWidth.DAILY,
            tz=zone,
            start=today,
            end=today,
            as_of=now,
            known_series=[("", "")],  # any series carries the day's coverage
        )
    except UnknownCameraError:
        return 0.0, 0.0
    covered = buckets[0].covered_s if buckets else 0.0
    elapsed = max((now - midnight).total_seconds(), 1.0)
    return covered, min(covered / elapsed, 1.0)


def _latest(*times: datetime | None) -> datetime | None:
    known = [t for t in times if t is not None]
    return max(known) if known else None


def _analysed_fps(run: RunRecord | None) -> float | None:
    if run is None or run.media_start is None or run.media_end is None:
        return None
    span = (run.media_end - run.media_start).total_seconds()
    return round(run.frames_analysed / span, 3) if span > 0 else None


def format_table(statuses: Iterable[CameraStatus], now: datetime | None = None) -> str:
    """The statuses as an aligned text table for the terminal."""
    moment = now or datetime.now(UTC)
    head = ["camera", "state", "last frame", "fps", "reconnects", "runs", "last run", "today"]
    body = [
        [
            s.camera_id,
            s.state,
            _ago(s.last_frame_at, moment),
            "" if s.fps is None else f"{s.fps:g}",
            "" if s.reconnects is None else str(s.reconnects),
            str(s.runs),
            s.last_run_status or "",
            f"{_amount(s.coverage_today_s)} ({s.coverage_today_share:.1%})",
        ]
        for s in statuses
    ]
    if not body:
        return "no cameras configured or stored"
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
        for row in [head, *body]
    )


def _ago(ts: datetime | None, now: datetime) -> str:
    if ts is None:
        return "never"
    seconds = (now - ts).total_seconds()
    if seconds < 0:
        return ts.astimezone(UTC).isoformat(timespec="seconds")
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    stamp = ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return stamp if seconds > 2 * 86400 else f"{_amount(seconds)} ago"


def _amount(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
