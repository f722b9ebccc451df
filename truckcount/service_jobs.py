"""The scheduled jobs of ``truckcount serve``: entry points that call library functions.

APScheduler keeps jobs in the database by reference (``truckcount.service_jobs:rollup``) with
the config file path as their only argument, so a job store survives restarts and code changes
alike. Each entry point records its execution in ``service_job_runs`` and in the Prometheus job
counters; a failing job logs, records ``failed`` and leaves the scheduler running.

Buckets are computed at query time from crossings and coverage (``storage.bucket_counts``), so
there is nothing to materialise: the rollup jobs *verify* the hour or day that just ended for
every camera (a bucket reads NULL exactly when nothing covered it, and covers no more than its
length) and record its counts and coverage.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from truckcount import metrics, service_store, status
from truckcount.config import AppConfig, load_config
from truckcount.service_watch import FolderWatcher, cli_argv, run_child
from truckcount.storage import bucket_counts, open_database
from truckcount.types import Bucket, BucketWidth

log = logging.getLogger(__name__)

STOP = threading.Event()
"""Set when the service shuts down: jobs stop taking new work and interrupt their children."""

_engines: dict[str, Engine] = {}
_watchers: dict[str, FolderWatcher] = {}
_lock = threading.Lock()


class JobFailedError(RuntimeError):
    """A job ran but found something wrong (the message says what)."""


def resolve(path: Path, config_path: Path) -> Path:
    """``path`` as given, or relative to the config file's folder."""
    return path if path.is_absolute() else (config_path.resolve().parent / path).resolve()


def engine_for(url: str) -> Engine:
    """One engine per database URL for the life of the process."""
    with _lock:
        if url not in _engines:
            _engines[url] = open_database(url)
            service_store.ensure_tables(_engines[url])
        return _engines[url]


def close_engines() -> None:
    """Dispose every engine the jobs opened (at shutdown)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def _recorded(
    job: str, config_path: str, body: Callable[[AppConfig, Engine], dict[str, Any]]
) -> None:
    started = datetime.now(UTC)
    clock = time.monotonic()
    cfg = load_config(Path(config_path))
    engine = engine_for(cfg.storage.url)
    metrics.JOB_RUNS.labels(job).inc()
    try:
        detail, state = body(cfg, engine), "ok"
    except Exception as exc:  # a job must not take the scheduler down; it is recorded instead
        log.exception("job %s failed", job)
        detail, state = {"error": f"{type(exc).__name__}: {exc}"}, "failed"
        metrics.JOB_FAILURES.labels(job).inc()
    metrics.JOB_DURATION.labels(job).observe(time.monotonic() - clock)
    finished = datetime.now(UTC)
    service_store.record_job(engine, service_store.JobRecord(job, started, finished, state, detail))


# --- entry points (referenced by the job store; keep their names and arguments) -------------------


def rollup(config_path: str, width: str) -> None:
    """Verify and record the local hour or day that just ended, for every camera."""
    size = BucketWidth(width)
    _recorded(f"rollup-{size.value}", config_path, lambda c, e: verify_period(c, e, size))


def watch_folder(config_path: str) -> None:
    """Process new recordings of the configured watch folder."""
    _recorded("watch-folder", config_path, lambda c, e: _scan(config_path, c, e))


def nightly_eval(config_path: str) -> None:
    """Evaluate the current model on the configured labelled frames; store the figures."""
    _recorded("nightly-eval", config_path, lambda c, e: evaluate_model(config_path, c, e))


# --- the work -------------------------------------------------------------------------------------


def previous_period(now: datetime, zone: str, width: BucketWidth) -> datetime:
    """Local start of the last complete clock hour or local day before ``now``."""
    local = now.astimezone(ZoneInfo(zone))
    if width is BucketWidth.HOURLY:
        hour = local.replace(minute=0, second=0, microsecond=0)
        return (hour.astimezone(UTC) - timedelta(hours=1)).astimezone(ZoneInfo(zone))
    day = local.date() - timedelta(days=1)
    return datetime.combine(day, datetime.min.time(), tzinfo=ZoneInfo(zone))


def verify_period(
    cfg: AppConfig, engine: Engine, width: BucketWidth, now: datetime | None = None
) -> dict[str, Any]:
    """Check the buckets of the period before ``now`` for every camera; their figures.

    Raises:
        JobFailedError: a bucket breaks a coverage rule (the message names camera and bucket).
    """
    moment = now or datetime.now(UTC)
    report: dict[str, Any] = {}
    for cam in status.camera_ids(engine, cfg):
        zone = status.zone_of(engine, cfg, cam)
        start = previous_period(moment, zone, width)
        buckets = [
            b
            for b in bucket_counts(
                engine,
                cam,
                width=width,
                tz=zone,
                start=start.date(),
                end=start.date(),
                known_series=[*status.configured_series(cfg, cam), ("", "")],
            )
            if b.start == start.astimezone(UTC) and b.line_id != ""  # UTC: a DST-ambiguous
            # local time never equals a time in another zone
        ]
        _check(cam, buckets)
        known = [b.count for b in buckets if b.count is not None]
        report[cam] = {
            "period": start.isoformat(),
            "series": len(buckets),
            "covered_s": max((b.covered_s for b in buckets), default=0.0),
            "count": sum(known) if known else None,
        }
    return report


def _check(camera_id: str, buckets: list[Bucket]) -> None:
    for b in buckets:
        length = (b.end - b.start).total_seconds()
        if (b.count is None) != (b.covered_s == 0) or not 0 <= b.covered_s <= length + 1e-6:
            raise JobFailedError(
                f"camera {camera_id!r} bucket {b.start.isoformat()} {b.line_id}:"
                f"{b.direction_name}: count {b.count} with {b.covered_s} s covered of {length} s"
            )


def _scan(config_path: str, cfg: AppConfig, engine: Engine) -> dict[str, Any]:
    if cfg.service.watch_folder is None:
        return {"skipped": "no watch_folder configured"}
    path = Path(config_path)
    folder = resolve(cfg.service.watch_folder, path)
    with _lock:
        watcher = _watchers.setdefault(str(folder), FolderWatcher(path, folder, STOP))
    return watcher.scan(engine, cfg)


def evaluate_model(config_path: str, cfg: AppConfig, engine: Engine) -> dict[str, Any]:
    """Run ``truckcount eval detect`` on the labelled frames and store its report."""
    if cfg.service.eval_data is None:
        return {"skipped": "no eval_data configured"}
    data = resolve(cfg.service.eval_data, Path(config_path))
    argv = cli_argv("eval", "detect", str(data), "--json", "--split", cfg.service.eval_split)
    argv += ["--weights", str(cfg.detector.weights)]
    with tempfile.TemporaryFile("w+") as out:
        code = run_child(argv, STOP, stdout=out)
        if code is None:
            return {"interrupted": True}
        if code != 0:
            raise JobFailedError(f"eval detect {data} exited with status {code}")
        out.seek(0)
        report = json.load(out)
    record = service_store.EvaluationRecord(
        datetime.now(UTC),
        str(report.get("model_version", "")),
        str(data),
        cfg.service.eval_split,
        report,
    )
    service_store.record_evaluation(engine, record)
    return {"model_version": record.model_version, "data": str(data), "all": report.get("all")}
