"""The writer the frame loop calls: runs into the database, or into a local spool while it is down.

``StorageWriter`` has the five writes of a run (``begin_run``, ``add_crossings``,
``add_coverage``, ``add_presence``, ``finish_run``). Each goes straight to the database when it
can be reached. When it cannot (server down, network gone, SQLite file not openable) the write is
appended to the attempt's spool file (see ``storage.spool``) and the call returns normally: the
frame loop keeps counting. Later writes of that attempt go to the spool too, in order, until a retry
(at most every ``retry_s`` seconds) finds the database back; the spool is then replayed and
deleted before writing on directly. After a successful write, spool files left by writers that
died are replayed as well; ``truckcount db replay`` does the same by hand.

Bad values (naive times, a duplicate track, an unknown status) raise ``StorageError`` before
anything is written or spooled, so a spool never holds a write the database would reject.

Example::

    writer = StorageWriter(cfg.storage.url, cfg.storage.spool_dir)
    writer.begin_run(run, timezone="Asia/Jakarta")
    writer.add_crossings(crossings)  # any number of times
    writer.add_coverage(run.run_id, first_ts, last_ts, frames_analysed=n)
    writer.add_presence(run.run_id, slots)  # the presence classifier's PresenceSlot tallies
    writer.finish_run(run.run_id, status="complete", frames_analysed=n,
                      media_start=first_ts, media_end=last_ts)
    writer.close()

The writer is thread-safe (one lock); one writer may carry several runs at once.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError

from truckcount.storage import repository as repo
from truckcount.storage.attempts import new_attempt_id
from truckcount.storage.database import DatabaseUnavailable, StorageError, mask_url, open_database
from truckcount.storage.models import RunStatus
from truckcount.storage.presence import add_presence, check_slots
from truckcount.storage.spool import (
    ReplayReport,
    SpoolFile,
    apply_records,
    begin_record,
    coverage_record,
    crossings_record,
    database_key,
    default_spool_dir,
    finish_record,
    presence_record,
    read_records,
    replay_folder,
)
from truckcount.types import Crossing, PresenceSlot, RunInfo

log = logging.getLogger(__name__)

Write = Callable[[Engine], object]


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot be reached now (worth spooling and retrying)."""
    if isinstance(exc, DatabaseUnavailable | OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


@dataclass
class _Attempt:
    """A run attempt this writer has begun and not yet handed over for good."""

    attempt_id: str
    begin: dict[str, Any]  # the spool file's first record
    spool: SpoolFile | None = None
    finished: bool = False


class StorageWriter:
    """Writes runs to the database at ``url``, spooling to ``spool_dir`` while it is unreachable.

    Args:
        url: SQLAlchemy URL, as for ``open_database``.
        spool_dir: folder of the spool files; None for ``default_spool_dir(url)``.
        retry_s: least time between two tries of an unreachable database.

    Raises:
        StorageError: ``url`` is not a valid database URL.
    """

    def __init__(self, url: str, spool_dir: Path | None = None, *, retry_s: float = 5.0) -> None:
        try:
            make_url(url)
        except (ArgumentError, ValueError):
            raise StorageError(f"invalid database URL {mask_url(url)}") from None
        self.url = url
        self.spool_dir = spool_dir or default_spool_dir(url)
        self.retry_s = retry_s
        self._engine: Engine | None = None
        self._down_since: float | None = None
        self._leftovers_checked = False
        self._attempts: dict[str, _Attempt] = {}  # by attempt id, oldest first
        self._open_runs: dict[str, str] = {}  # run id -> attempt id of its open attempt
        self._lock = threading.RLock()

    @property
    def spooling(self) -> bool:
        """Whether some write of this writer is waiting in the spool."""
        with self._lock:
            return bool(self._spooled())

    def begin_run(self, run: RunInfo, timezone: str) -> str:
        """Register the camera and begin a new attempt at ``run``; returns the attempt id."""
        repo._zone(timezone)
        repo._require_aware(run.started_at, "RunInfo.started_at")
        attempt = new_attempt_id()

        def write(engine: Engine) -> None:
            repo.ensure_camera(engine, run.camera_id, timezone)
            repo.begin_run(engine, run, attempt_id=attempt)

        with self._lock:
            if run.run_id in self._open_runs:
                raise StorageError(f"run {run.run_id!r} is already open in this writer")
            begin = begin_record(run, timezone, attempt, database_key(self.url))
            self._attempts[attempt] = _Attempt(attempt, begin)
            self._open_runs[run.run_id] = attempt
            self._write(attempt, None, write)
        return attempt

    def add_crossings(self, crossings: Sequence[Crossing]) -> None:
        """Store crossings of runs begun by this writer."""
        if not crossings:
            return
        repo._reject_duplicates(crossings)
        by_run: dict[str, list[Crossing]] = {}
        for c in crossings:
            by_run.setdefault(c.run_id, []).append(c)
        with self._lock:
            attempts = {run_id: self._checked(run_id, batch) for run_id, batch in by_run.items()}
            for run_id, batch in by_run.items():
                attempt = attempts[run_id]
                record = crossings_record(batch, attempt)
                write = functools.partial(_add_crossings, crossings=batch, attempt_id=attempt)
                self._write(attempt, record, write)

    def add_coverage(
        self,
        run_id: str,
        start: datetime,
        end: datetime,
        frames_analysed: int,
        frames_dropped: int = 0,
        gap_reason: str | None = None,
    ) -> None:
        """Record a span of video the run analysed (see ``repository.add_coverage``)."""
        repo._check_media_span(start, end)
        if frames_analysed < 0 or frames_dropped < 0:
            raise StorageError(
                f"frame counts: expected >= 0, got {frames_analysed}, {frames_dropped}"
            )
        with self._lock:
            attempt = self._open(run_id)
            args = (run_id, start, end, frames_analysed, frames_dropped, gap_reason)
            record = coverage_record(*args, attempt)
            self._write(attempt, record, lambda e: repo.add_coverage(e, *args, attempt_id=attempt))

    def add_presence(self, run_id: str, slots: Sequence[PresenceSlot]) -> None:
        """Store the presence classifier's per-slot tallies of the run, before ``finish_run``
        (see ``presence.add_presence``); an empty sequence writes nothing."""
        if not slots:
            return
        with self._lock:
            attempt = self._open(run_id)
            check_slots(slots, run_id, self._attempts[attempt].begin["run"]["camera_id"])
            batch = list(slots)
            record = presence_record(batch, run_id, attempt)
            self._write(
                attempt, record, lambda e: add_presence(e, run_id, batch, attempt_id=attempt)
            )

    def finish_run(
        self,
        run_id: str,
        *,
        status: RunStatus | str,
        frames_analysed: int,
        media_start: datetime | None,
        media_end: datetime | None,
    ) -> None:
        """Close the run as ``complete`` or ``failed`` (see ``repository.finish_run``)."""
        final = repo._final_status(status)
        repo._check_media_span(media_start, media_end)
        if frames_analysed < 0:
            raise StorageError(f"frames_analysed: expected >= 0, got {frames_analysed}")
        with self._lock:
            attempt = self._open(run_id)
            record = finish_record(run_id, final, frames_analysed, media_start, media_end, attempt)

            def write(engine: Engine) -> None:
                repo.finish_run(
                    engine,
                    run_id,
                    status=final,
                    frames_analysed=frames_analysed,
                    media_start=media_start,
                    media_end=media_end,
                    attempt_id=attempt,
                )

            self._write(attempt, record, write)
            self._attempts[attempt].finished = True
            del self._open_runs[run_id]
            self._forget_done()

    def replay(self) -> ReplayReport:
        """Replay this writer's spooled writes and the spool files left by dead writers.

        Raises:
            DatabaseUnavailable: the database is still unreachable.
            StorageError: the database rejects a spooled write.
        """
        with self._lock:
            engine = self._connect(force=True)
            if engine is None:
                raise DatabaseUnavailable(f"database {mask_url(self.url)} is unreachable")
            own = self._spooled()
            try:
                records = sum(self._drain(engine, a) for a in own)
                other = replay_folder(engine, self.spool_dir, skip=self._held())
            except Exception as exc:
                if not is_unreachable(exc):
                    raise
                self._went_down(exc)
                raise DatabaseUnavailable(f"database {mask_url(self.url)} is unreachable") from exc
            self._down_since = None
            self._forget_done()
            return ReplayReport(
                other.files + len(own), other.records + records, other.busy, other.foreign
            )

    def close(self) -> None:
        """Try once more to replay, then release the spool files (they stay for a later replay)."""
        with self._lock:
            if self.spooling:
                try:
                    self.replay()
                except StorageError as exc:
                    log.warning(
                        "spooled writes stay in %s (%s); run `truckcount db replay` later",
                        self.spool_dir,
                        exc,
                    )
            for a in self._spooled():
                a.spool.close()  # type: ignore[union-attr]
                a.spool = None
            self._attempts.clear()
            self._open_runs.clear()
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    # --- internals --------------------------------------------------------------------------

    def _open(self, run_id: str) -> str:
        attempt = self._open_runs.get(run_id)
        if attempt is None:
            raise StorageError(f"run {run_id!r} is not open in this writer (call begin_run)")
        return attempt

    def _checked(self, run_id: str, crossings: list[Crossing]) -> str:
        """The open attempt of ``run_id``, after checking the crossings are of its camera."""
        attempt = self._open(run_id)
        camera = self._attempts[attempt].begin["run"]["camera_id"]
        strays = sorted({c.camera_id for c in crossings} - {camera})
        if strays:
            raise StorageError(
                f"crossing of camera {strays[0]!r} given for run {run_id!r} of camera {camera!r}"
            )
        return attempt

    def _write(self, attempt_id: str, record: dict[str, Any] | None, write: Write) -> None:
        """Write directly, or spool ``record`` (None: only make sure the spool has the begin).

        While anything of this writer is spooled, the spool is replayed first, so the database
        receives the writes in the order they were made.
        """
        attempt = self._attempts[attempt_id]
        if self._spooled() and not self._try_drain():
            self._append(attempt, record)
            return
        engine = self._connect()
        if engine is None:
            self._append(attempt, record)
            return
        try:
            write(engine)
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            self._went_down(exc)
            self._append(attempt, record)
            return
        self._replay_leftovers(engine)

    def _append(self, attempt: _Attempt, record: dict[str, Any] | None) -> None:
        if attempt.spool is None:
            attempt.spool = SpoolFile(self.spool_dir, attempt.attempt_id)
            attempt.spool.append(attempt.begin)
            log.warning("database unreachable; spooling to %s", attempt.spool.path)
        if record is not None:
            attempt.spool.append(record)

    def _try_drain(self) -> bool:
        """Replay every spooled attempt of this writer, oldest first; False if still down."""
        engine = self._connect()
        if engine is None:
            return False
        try:
            for attempt in self._spooled():
                self._drain(engine, attempt)
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            self._went_down(exc)
            return False
        self._forget_done()
        return True

    def _drain(self, engine: Engine, attempt: _Attempt) -> int:
        """Replay the attempt's own spool file and delete it."""
        assert attempt.spool is not None
        done = apply_records(engine, read_records(attempt.spool.path))
        attempt.spool.close(delete=True)
        attempt.spool = None
        log.info(
            "database back: replayed %d spooled write(s) of attempt %s", done, attempt.attempt_id
        )
        return done

    def _connect(self, *, force: bool = False) -> Engine | None:
        """The engine, or None while the database is down and the retry time has not passed."""
        now = time.monotonic()
        if not force and self._down_since is not None and now - self._down_since < self.retry_s:
            return None
        if self._engine is None:
            try:
                self._engine = open_database(self.url)
            except DatabaseUnavailable as exc:
                self._went_down(exc)
                return None
        return self._engine

    def _went_down(self, exc: BaseException) -> None:
        if self._down_since is None:
            log.warning("database %s unreachable: %s", mask_url(self.url), _first_line(exc))
        self._down_since = time.monotonic()

    def _replay_leftovers(self, engine: Engine) -> None:
        """After a good write: replay files of dead writers once, and after every outage."""
        if self._down_since is None and self._leftovers_checked:
            return
        self._down_since = None
        self._leftovers_checked = True
        try:
            replay_folder(engine, self.spool_dir, skip=self._held())
        except Exception as exc:
            if not (is_unreachable(exc) or isinstance(exc, StorageError)):
                raise
            log.warning("spool in %s not replayed: %s", self.spool_dir, _first_line(exc))

    def _spooled(self) -> list[_Attempt]:
        return [a for a in self._attempts.values() if a.spool is not None]

    def _held(self) -> set[Path]:
        return {a.spool.path for a in self._spooled() if a.spool is not None}

    def _forget_done(self) -> None:
        done = [k for k, a in self._attempts.items() if a.finished and a.spool is None]
        for k in done:
            del self._attempts[k]


def _add_crossings(engine: Engine, *, crossings: list[Crossing], attempt_id: str) -> None:
    repo.add_crossings(engine, crossings, attempt_id=attempt_id)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
