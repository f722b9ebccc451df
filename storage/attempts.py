"""Which attempt of a run a write goes to.

Each ``begin_run`` starts an attempt with an id of its own; writes name the attempt, or default
to the run's running attempt. Replayed writes (``replay=True``) into an attempt that has already
finished are skipped: in a spool, everything before a finish was applied before it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Connection, select

from truckcount.storage.database import StorageError
from truckcount.storage.models import RunRow, RunStatus
from truckcount.types import Crossing

log = logging.getLogger(__name__)


def new_attempt_id() -> str:
    """A fresh attempt id: UTC time to the microsecond, then random hex (sorts by creation)."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:12]}"


def running_attempts(
    conn: Connection, crossings: Sequence[Crossing], attempt_id: str | None, *, replay: bool
) -> dict[str, str]:
    """Attempt id per run id of ``crossings``; runs whose attempt is finished are left out
    when replaying."""
    pairs = sorted({(c.run_id, c.camera_id) for c in crossings})
    if attempt_id is not None and len({run_id for run_id, _ in pairs}) > 1:
        raise StorageError(f"crossings of several runs given for one attempt {attempt_id!r}")
    attempts: dict[str, str] = {}
    for run_id, camera_id in pairs:
        attempt = target_attempt(conn, run_id, attempt_id, replay=replay, what="crossings")
        if attempt is None:
            continue
        stored = conn.scalar(select(RunRow.camera_id).where(RunRow.attempt_id == attempt))
        if stored != camera_id:
            raise StorageError(
                f"crossing of camera {camera_id!r} given for run {run_id!r} of camera {stored!r}"
            )
        attempts[run_id] = attempt
    return attempts


def target_attempt(
    conn: Connection,
    run_id: str,
    attempt_id: str | None,
    *,
    replay: bool,
    what: str = "finish",
) -> str | None:
    """The running attempt a write goes to; None when replaying into a finished one.

    Raises:
        StorageError: no such run or attempt, or (not replaying) it is no longer running.
    """
    stmt = select(RunRow.attempt_id, RunRow.status).where(RunRow.run_id == run_id)
    if attempt_id is not None:
        stmt = stmt.where(RunRow.attempt_id == attempt_id)
    rows = conn.execute(stmt.order_by(RunRow.attempt_id.desc())).all()
    if not rows:
        named = f"attempt {attempt_id!r} of run {run_id!r}" if attempt_id else f"run {run_id!r}"
        hint = "" if what == "finish" else "; call begin_run first"
        raise StorageError(f"{what} for unknown {named}{hint}" if hint else f"unknown {named}")
    running = [r.attempt_id for r in rows if r.status == RunStatus.RUNNING.value]
    if running:
        return str(running[0])
    if replay:
        log.info("run %s: attempt already %s; replayed %s skipped", run_id, rows[0].status, what)
        return None
    if what == "finish":
        raise StorageError(f"run {run_id!r} is already {rows[0].status}")
    raise StorageError(f"run {run_id!r} is {rows[0].status}; it takes no more {what}")
