"""A local, durable spool of writes that could not reach the database, and its replay.

One JSON-lines file per run attempt, ``<attempt id>.jsonl`` in the spool folder. Each line is one
write (``begin``, ``crossings``, ``coverage``, ``presence``, ``finish``) and is fsync'd before
the writer returns, so an acknowledged write survives a crash or power loss. A file always starts
with the attempt's ``begin``, so it replays on its own. The writer that owns a file holds an
exclusive ``flock`` on it; replay skips files that are locked, i.e. still being written.

Replay applies a file's writes in order with ``replay=True`` (see ``repository``), which makes it
idempotent: a begin of a stored attempt, a crossing whose (attempt, line, track) is stored, a
coverage span or presence slot already stored and a finish of a finished attempt are all skipped.
The file is deleted once every line is applied; replaying again then finds nothing, and a replay
that dies half-way is simply run again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import URL, make_url

from truckcount.redact import is_secret_param
from truckcount.storage import repository as repo
from truckcount.storage.database import StorageError, mask_url
from truckcount.storage.models import RunStatus
from truckcount.storage.presence import add_presence
from truckcount.types import Crossing, Direction, PresenceSlot, RunInfo, VehicleClass

log = logging.getLogger(__name__)

SUFFIX = ".jsonl"


@dataclass(frozen=True)
class ReplayReport:
    """What one replay of a spool folder did."""

    files: int  # spool files fully applied and deleted
    records: int  # lines applied
    busy: int  # files skipped because a live writer still holds them
    foreign: int = 0  # files skipped because they were spooled for another database


class SpoolFile:
    """The open, locked spool file of one attempt; ``append`` returns once the line is on disk."""

    def __init__(self, folder: Path, attempt_id: str) -> None:
        self.path = folder / f"{attempt_id}{SUFFIX}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            while True:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX)
                if os.fstat(fd).st_nlink > 0:  # not deleted by a replay between open and lock
                    break
                os.close(fd)
            _fsync_dir(folder)
        except OSError as exc:
            raise StorageError(f"cannot spool to {self.path}: {exc.strerror or exc}") from None
        self._fd = fd

    def append(self, record: dict[str, Any]) -> None:
        """Write one line and fsync it; ``StorageError`` when the disk refuses it."""
        line = json.dumps(record, separators=(",", ":")) + "\n"
        try:
            os.write(self._fd, line.encode())
            os.fsync(self._fd)
        except OSError as exc:
            raise StorageError(f"cannot spool to {self.path}: {exc.strerror or exc}") from None

    def close(self, *, delete: bool = False) -> None:
        """Release the lock; with ``delete`` remove the file first (it was replayed)."""
        if delete:
            self.path.unlink(missing_ok=True)
            _fsync_dir(self.path.parent)
        os.close(self._fd)


def default_spool_dir(url: str) -> Path:
    """Beside a SQLite file (``counts.db`` -> ``counts.db.spool/``), else a folder of its own per
    database in the user's data dir (``spool/<backend>-<host>-<database>-<hash>``), so that one
    database's writes are never replayed into another."""
    parsed = make_url(url)
    db = parsed.database
    if parsed.get_backend_name() == "sqlite" and db and db != ":memory:":
        path = Path(db)
        return path.with_name(path.name + ".spool")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    digest = hashlib.sha256(database_key(url).encode()).hexdigest()[:10]
    name = "-".join(p for p in (parsed.get_backend_name(), parsed.host, db) if p)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    return Path(base) / "truckcount" / "spool" / f"{name}-{digest}"


def database_key(url: str | URL) -> str:
    """Which database a URL names, whatever its password: backend, user, host, port, database
    (for a SQLite file, its absolute path) and query, less any query key that holds a secret."""
    parsed = make_url(url)._replace(password=None)
    parsed = parsed.difference_update_query(k for k in parsed.query if is_secret_param(k))
    db = parsed.database
    if parsed.get_backend_name() == "sqlite" and db and db != ":memory:":
        parsed = parsed._replace(database=str(Path(db).resolve()))
    return parsed.render_as_string(hide_password=False)


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of a spool file; a torn last line (a crash mid-write) is left out.

    Raises:
        StorageError: a line other than the last is not valid JSON.
    """
    lines = path.read_bytes().split(b"\n")
    records = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            records.append(json.loads(raw))
        except ValueError:
            if number == len(lines):  # no newline after it: never acknowledged
                log.warning("%s: ignoring a torn last line", path)
                continue
            raise StorageError(f"spool file {path}: line {number} is not valid JSON") from None
    return records


def apply_records(engine: Engine, records: list[dict[str, Any]]) -> int:
    """Apply spool records in order, idempotently; returns how many were applied."""
    for record in records:
        _APPLY[record["op"]](engine, record)
    return len(records)


def replay_folder(engine: Engine, folder: Path, *, skip: set[Path] | None = None) -> ReplayReport:
    """Replay every spool file in ``folder`` that no live writer holds, oldest attempt first.

    Files in ``skip`` (held by the calling writer itself) are left alone.

    Raises:
        StorageError: a record is rejected by the database; that file stays for a later replay.
    """
    files = records = busy = foreign = 0
    for path in sorted(folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []:
        if skip and path in skip:
            continue
        done = _replay_unlocked(engine, path)
        if done is None:
            busy += 1
        elif done < 0:
            foreign += 1
        else:
            files, records = files + 1, records + done
    if files:
        log.info("replayed %d spool file(s), %d write(s) from %s", files, records, folder)
    return ReplayReport(files, records, busy, foreign)


def _replay_unlocked(engine: Engine, path: Path) -> int | None:
    """Replay and delete one file unless a writer holds it (then None) or it was spooled for
    another database (then -1: it is left for that one)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return 0
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        if os.fstat(fd).st_nlink == 0:  # another replay finished it meanwhile
            return 0
        spooled = read_records(path)
        meant = spooled[0].get("database") if spooled else None
        if meant is not None and meant != database_key(engine.url):
            log.warning(
                "spool file %s holds writes for %s, not %s: left for that database",
                path,
                mask_url(meant),
                mask_url(str(engine.url)),
            )
            return -1
        done = apply_records(engine, spooled)
        path.unlink()
        _fsync_dir(path.parent)
        return done
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- records ------------------------------------------------------------------------------------


def begin_record(
    run: RunInfo, timezone: str, attempt_id: str, database: str | None = None
) -> dict[str, Any]:
    """The record that starts every spool file; ``database`` (a ``database_key``) is where its
    writes belong: a replay into any other database leaves the file alone."""
    return {
        "op": "begin",
        "database": database,
        "attempt_id": attempt_id,
        "timezone": timezone,
        "run": {
            "run_id": run.run_id,
            "camera_id": run.camera_id,
            "source": run.source,
            "model_version": run.model_version,
            "config_hash": run.config_hash,
            "started_at": run.started_at.isoformat(),
            "extra": dict(run.extra),
        },
    }


def crossings_record(crossings: list[Crossing], attempt_id: str) -> dict[str, Any]:
    rows = [
        [
            c.camera_id,
            c.line_id,
            int(c.track_id),
            c.class_name.value,
            c.direction.value,
            c.direction_name,
            c.ts.isoformat(),
            float(c.confidence),
            c.model_version,
            c.run_id,
        ]
        for c in crossings
    ]
    return {"op": "crossings", "attempt_id": attempt_id, "rows": rows}


def coverage_record(
    run_id: str,
    start: datetime,
    end: datetime,
    frames_analysed: int,
    frames_dropped: int,
    gap_reason: str | None,
    attempt_id: str,
) -> dict[str, Any]:
    return {
        "op": "coverage",
        "attempt_id": attempt_id,
        "run_id": run_id,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "frames_analysed": frames_analysed,
        "frames_dropped": frames_dropped,
        "gap_reason": gap_reason,
    }


def presence_record(slots: Sequence[PresenceSlot], run_id: str, attempt_id: str) -> dict[str, Any]:
    rows = [[s.camera_id, s.start.isoformat(), s.frames, s.truck_frames] for s in slots]
    return {"op": "presence", "attempt_id": attempt_id, "run_id": run_id, "slots": rows}


def finish_record(
    run_id: str,
    status: RunStatus,
    frames_analysed: int,
    media_start: datetime | None,
    media_end: datetime | None,
    attempt_id: str,
) -> dict[str, Any]:
    return {
        "op": "finish",
        "attempt_id": attempt_id,
        "run_id": run_id,
        "status": status.value,
        "frames_analysed": frames_analysed,
        "media_start": None if media_start is None else media_start.isoformat(),
        "media_end": None if media_end is None else media_end.isoformat(),
    }


def _begin(engine: Engine, record: dict[str, Any]) -> None:
    fields = dict(record["run"])
    fields["started_at"] = datetime.fromisoformat(fields["started_at"])
    run = RunInfo(**fields)
    repo.ensure_camera(engine, run.camera_id, record["timezone"])
    repo.begin_run(engine, run, attempt_id=record["attempt_id"])


def _crossings(engine: Engine, record: dict[str, Any]) -> None:
    crossings = [
        Crossing(
            camera,
            line,
            track,
            VehicleClass(cls),
            Direction(way),
            name,
            datetime.fromisoformat(ts),
            confidence,
            model,
            run_id,
        )
        for camera, line, track, cls, way, name, ts, confidence, model, run_id in record["rows"]
    ]
    repo.add_crossings(engine, crossings, attempt_id=record["attempt_id"], replay=True)


def _coverage(engine: Engine, record: dict[str, Any]) -> None:
    repo.add_coverage(
        engine,
        record["run_id"],
        datetime.fromisoformat(record["start"]),
        datetime.fromisoformat(record["end"]),
        record["frames_analysed"],
        record["frames_dropped"],
        record["gap_reason"],
        attempt_id=record["attempt_id"],
        replay=True,
    )


def _presence(engine: Engine, record: dict[str, Any]) -> None:
    slots = [
        PresenceSlot(camera, datetime.fromisoformat(start), frames, truck_frames)
        for camera, start, frames, truck_frames in record["slots"]
    ]
    add_presence(engine, record["run_id"], slots, attempt_id=record["attempt_id"], replay=True)


def _finish(engine: Engine, record: dict[str, Any]) -> None:
    repo.finish_run(
        engine,
        record["run_id"],
        status=record["status"],
        frames_analysed=record["frames_analysed"],
        media_start=_instant(record["media_start"]),
        media_end=_instant(record["media_end"]),
        attempt_id=record["attempt_id"],
        replay=True,
    )


def _instant(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


_APPLY = {
    "begin": _begin,
    "crossings": _crossings,
    "coverage": _coverage,
    "presence": _presence,
    "finish": _finish,
}
