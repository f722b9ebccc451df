"""Truck presence per 15-minute slot: a run's tallies in, a bucket's share of truck frames out.

The truck-presence classifier tallies, per camera and 15-minute UTC slot, the frames it looked at
and those it judged to hold a truck (``truckcount.types.PresenceSlot``). ``add_presence`` stores
them for a running attempt, like ``repository.add_coverage``; they count only once the attempt is
complete and is the visible vintage of its source. ``with_truck_share`` gives each bucket the share
of classified frames with a truck: the sum of ``truck_frames`` over the sum of ``frames`` of the
slots that start inside it. Every time zone's offset is a multiple of 15 minutes, so the slots
tile local hours and days exactly. A bucket without slots (no classifier ran, nothing analysed)
has no share (None), never 0.
"""

from __future__ import annotations

import dataclasses
import logging
from bisect import bisect_right
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Select, insert, select

from truckcount.storage.attempts import target_attempt
from truckcount.storage.database import StorageError
from truckcount.storage.models import PresenceRow, RunRow
from truckcount.types import Bucket, PresenceSlot

log = logging.getLogger(__name__)


def check_slots(slots: Sequence[PresenceSlot], run_id: str, camera_id: str) -> None:
    """Reject slots that do not belong to ``run_id`` of ``camera_id``, or one slot given twice.

    Raises:
        StorageError: a value is not a ``PresenceSlot``, a slot is of another camera, or two
            slots share a start.
    """
    seen: set[datetime] = set()
    for slot in slots:
        if not isinstance(slot, PresenceSlot):
            raise StorageError(f"presence: expected PresenceSlot, got {type(slot).__name__}")
        if slot.camera_id != camera_id:
            raise StorageError(
                f"presence slot of camera {slot.camera_id!r} given for run {run_id!r} "
                f"of camera {camera_id!r}"
            )
        if slot.start in seen:
            raise StorageError(
                f"run {run_id!r}: presence slot {slot.start.isoformat()} given more than once"
            )
        seen.add(slot.start)


def add_presence(
    engine: Engine,
    run_id: str,
    slots: Sequence[PresenceSlot],
    *,
    attempt_id: str | None = None,
    replay: bool = False,
) -> int:
    """Store presence slots of a running attempt in one transaction; returns how many were written.

    Args:
        engine: from ``open_database``.
        run_id: a run started with ``begin_run``.
        slots: per-slot tallies of the run's camera; an empty sequence writes nothing.
        attempt_id: the attempt they belong to; default: the run's running attempt.
        replay: skip slots already stored for the attempt (same start), and everything of an
            attempt that is no longer running (its spool was replayed before), instead of raising.

    Raises:
        StorageError: unknown run, a run no longer running, a slot of another camera, a slot given
            twice, or (not replaying) a slot already stored for the attempt.
    """
    if not slots:
        return 0
    with engine.begin() as conn:
        attempt = target_attempt(conn, run_id, attempt_id, replay=replay, what="presence")
        if attempt is None:
            return 0
        camera_id = conn.scalar(select(RunRow.camera_id).where(RunRow.attempt_id == attempt))
        check_slots(slots, run_id, str(camera_id))
        stored = set(
            conn.scalars(select(PresenceRow.start).where(PresenceRow.attempt_id == attempt))
        )
        fresh = [s for s in slots if s.start not in stored]
        if len(fresh) < len(slots) and not replay:
            again = min(s.start for s in slots if s.start in stored)
            raise StorageError(
                f"run {run_id!r}: presence slot {again.isoformat()} is already stored"
            )
        if fresh:
            rows = [
                {
                    "attempt_id": attempt,
                    "run_id": run_id,
                    "camera_id": camera_id,
                    "start": s.start,
                    "frames": s.frames,
                    "truck_frames": s.truck_frames,
                }
                for s in fresh
            ]
            conn.execute(insert(PresenceRow), rows)
    log.debug("run %s (attempt %s): %d presence slot(s) stored", run_id, attempt, len(fresh))
    return len(fresh)


def stored_slots(
    conn: Connection, camera_id: str, runs: Select[Any], lo: datetime, hi: datetime
) -> list[PresenceSlot]:
    """Presence slots of the camera's attempts in ``runs`` (a ``visible_runs`` subquery) that
    start in ``[lo, hi)``, oldest first."""
    stmt = (
        select(PresenceRow.start, PresenceRow.frames, PresenceRow.truck_frames)
        .where(
            PresenceRow.camera_id == camera_id,
            PresenceRow.attempt_id.in_(runs),
            PresenceRow.start >= lo,
            PresenceRow.start < hi,
        )
        .order_by(PresenceRow.start)
    )
    rows = conn.execute(stmt)
    return [PresenceSlot(camera_id, r.start, r.frames, r.truck_frames) for r in rows]


def with_truck_share(buckets: Sequence[Bucket], slots: Sequence[PresenceSlot]) -> list[Bucket]:
    """``buckets`` with ``truck_share`` set from the slots that start inside each bucket.

    The share is per camera: every series of a camera gets the same value for the same bucket.
    Buckets without a slot keep ``truck_share`` None.
    """
    ends = {b.start: b.end for b in buckets}
    starts = sorted(ends)
    sums: dict[datetime, tuple[int, int]] = {}
    for t in slots:
        i = bisect_right(starts, t.start) - 1
        if i < 0 or t.start >= ends[starts[i]]:
            continue  # outside every bucket
        frames, trucks = sums.get(starts[i], (0, 0))
        sums[starts[i]] = (frames + t.frames, trucks + t.truck_frames)
    share = {start: trucks / frames for start, (frames, trucks) in sums.items() if frames > 0}
    return [dataclasses.replace(b, truck_share=share.get(b.start)) for b in buckets]
