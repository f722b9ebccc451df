"""Watch-folder backfill: recordings dropped in a folder are processed once each.

A file is a recording of camera ``C`` when its name matches the service's ``watch_pattern`` with
``{camera}`` replaced by ``C``; the strptime codes give its first frame's wall-clock time in the
camera's time zone. Each recording runs as ``truckcount run`` in a child process: a crash or a hang
in decoding stays out of the service, and on shutdown the child gets SIGINT, which marks its run
failed (a failed run never counts) so the next scan processes the file again. A file counts as
done once a complete run of it is stored, so a restart never processes it twice.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Engine

from truckcount import metrics
from truckcount.config import AppConfig, CameraConfig
from truckcount.ingest.timestamps import parse_filename_time
from truckcount.storage import RunStatus, list_runs

log = logging.getLogger(__name__)

CHILD_STOP_S = 3.0
"""How long a child gets after SIGINT to mark its run failed before it is killed."""


@dataclass(frozen=True)
class Recording:
    """A recording file of one camera and the wall-clock time of its first frame."""

    path: Path
    camera_id: str
    start: datetime


def match_recording(
    name: str, cameras: Sequence[CameraConfig], pattern: str
) -> tuple[str, datetime] | None:
    """The camera and first-frame time (UTC) a file name encodes; None if no camera matches.

    A camera's own ``filename_pattern`` is used when it has one, else ``pattern`` with
    ``{camera}`` replaced by the camera id; times without ``%z`` are in the camera's zone.

    >>> from truckcount.config import CameraConfig
    >>> cam, ts = match_recording(
    ...     "km39_20211115_131709.mp4", [CameraConfig(id="km39", timezone="Asia/Jakarta")],
    ...     "{camera}_%Y%m%d_%H%M%S.mp4")
    >>> cam, ts.isoformat()
    ('km39', '2021-11-15T06:17:09+00:00')
    """
    for cam in cameras:
        own = cam.filename_pattern or pattern.replace("{camera}", cam.id)
        ts = parse_filename_time(name, own, cam.timezone)
        if ts is not None:
            return cam.id, ts
    return None


def pending_recordings(
    engine: Engine, cfg: AppConfig, folder: Path, now: float | None = None
) -> list[Recording]:
    """Recordings in ``folder`` without a complete run, unchanged for ``settle_s``, oldest first."""
    svc = cfg.service
    done = {r.source for r in list_runs(engine) if r.status is RunStatus.COMPLETE}
    moment = time.time() if now is None else now
    found = []
    for path in sorted(folder.iterdir()):
        matched = match_recording(path.name, cfg.cameras, svc.watch_pattern)
        if matched is None or not path.is_file() or str(path.resolve()) in done:
            continue
        if moment - path.stat().st_mtime < svc.settle_s:
            log.debug("watch folder: %s is still changing", path.name)
            continue
        found.append(Recording(path.resolve(), matched[0], matched[1]))
    return sorted(found, key=lambda r: (r.start, r.camera_id))


def run_child(
    argv: Sequence[str], stop: threading.Event, stdout: IO[Any] | int | None = None
) -> int | None:
    """Run ``argv`` to its end, or until ``stop`` is set; the exit status, None if stopped.

    A stopped child gets SIGINT (Python raises KeyboardInterrupt; the pipeline marks its run
    failed), and SIGKILL if it has not exited ``CHILD_STOP_S`` later.
    """
    proc = subprocess.Popen(list(argv), stdout=stdout, stdin=subprocess.DEVNULL)
    try:
        while True:
            try:
                return proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                if stop.is_set():
                    break
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=CHILD_STOP_S)
        except subprocess.TimeoutExpired:
            log.warning("child %d ignored SIGINT for %.0f s; killing it", proc.pid, CHILD_STOP_S)
            proc.kill()
            proc.wait()
        return None
    finally:
        if proc.poll() is None:  # an exception in this thread: never leave an orphan behind
            proc.kill()
            proc.wait()


def cli_argv(*args: str) -> list[str]:
    """``truckcount ARGS`` run with this interpreter (quiet: warnings and errors only)."""
    return [sys.executable, "-m", "truckcount.cli", "-q", *args]


class FolderWatcher:
    """Processes the pending recordings of one folder, remembering files that failed.

    A file that fails is not tried again until it changes (its size or modification time), so a
    corrupt file does not loop; a file interrupted by shutdown is simply pending next time.
    """

    def __init__(self, config_path: Path, folder: Path, stop: threading.Event) -> None:
        self.config_path = config_path
        self.folder = folder
        self.stop = stop
        self.failed: dict[Path, tuple[int, float]] = {}

    def scan(self, engine: Engine, cfg: AppConfig) -> dict[str, Any]:
        """Process what is pending now; a summary for the job log."""
        if not self.folder.is_dir():
            raise FileNotFoundError(f"watch folder {self.folder} does not exist")
        summary: dict[str, list[str]] = {"processed": [], "failed": [], "interrupted": []}
        for rec in pending_recordings(engine, cfg, self.folder):
            if self.stop.is_set():
                break
            stat = rec.path.stat()
            if self.failed.get(rec.path) == (stat.st_size, stat.st_mtime):
                continue
            outcome = self._process(rec)
            if outcome == "processed":
                _count_frames(engine, rec)
            summary[outcome].append(rec.path.name)
            if outcome == "failed":
                self.failed[rec.path] = (stat.st_size, stat.st_mtime)
        return {k: v for k, v in summary.items() if v}

    def _process(self, rec: Recording) -> str:
        log.info("watch folder: %s (camera %s, from %s)", rec.path.name, rec.camera_id, rec.start)
        argv = cli_argv(
            "run",
            str(rec.path),
            "--camera",
            rec.camera_id,
            "--config",
            str(self.config_path),
            "--start",
            rec.start.isoformat(),
        )
        status = run_child(argv, self.stop, stdout=subprocess.DEVNULL)
        outcome = "interrupted" if status is None else "processed" if status == 0 else "failed"
        metrics.RECORDINGS_PROCESSED.labels(rec.camera_id, outcome).inc()
        if outcome == "failed":
            log.error("watch folder: %s failed (exit status %s)", rec.path.name, status)
        return outcome


def _count_frames(engine: Engine, rec: Recording) -> None:
    """Add the frames a child analysed to the service's metrics (the child has its own)."""
    source = str(rec.path)
    runs = [r for r in list_runs(engine, rec.camera_id) if r.source == source]
    done = [r for r in runs if r.status is RunStatus.COMPLETE]
    if done:
        metrics.FRAMES_ANALYSED.labels(rec.camera_id).inc(done[-1].frames_analysed)
