"""Where a live session writes: the ``RunWriter`` shape, and a writer straight onto the database."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from sqlalchemy import Engine

from truckcount.storage import repository as repo
from truckcount.types import Crossing, RunInfo


class RunWriter(Protocol):
    """What a live session writes through (``storage.writer.StorageWriter`` has this shape)."""

    def begin_run(self, run: RunInfo, timezone: str) -> object:
        """Register the camera and begin the run."""

    def add_crossings(self, crossings: Sequence[Crossing]) -> object:
        """Store crossings of an open run."""

    def add_coverage(
        self,
        run_id: str,
        start: datetime,
        end: datetime,
        frames_analysed: int,
        frames_dropped: int = 0,
        gap_reason: str | None = None,
    ) -> None:
        """Record analysed video of an open run."""

    def finish_run(
        self,
        run_id: str,
        *,
        status: str,
        frames_analysed: int,
        media_start: datetime | None,
        media_end: datetime | None,
    ) -> None:
        """Close the run ``complete`` or ``failed``."""


class DirectWriter:
    """``RunWriter`` straight onto the database (``storage.repository``), no spooling."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def begin_run(self, run: RunInfo, timezone: str) -> None:
        """Register the camera and begin the run."""
        repo.ensure_camera(self.engine, run.camera_id, timezone)
        repo.begin_run(self.engine, run)

    def add_crossings(self, crossings: Sequence[Crossing]) -> None:
        """Store crossings of an open run."""
        repo.add_crossings(self.engine, crossings)

    def add_coverage(
        self,
        run_id: str,
        start: datetime,
        end: datetime,
        frames_analysed: int,
        frames_dropped: int = 0,
        gap_reason: str | None = None,
    ) -> None:
        """Record analysed video of an open run."""
        args = (run_id, start, end, frames_analysed, frames_dropped, gap_reason)
        repo.add_coverage(self.engine, *args)

    def finish_run(
        self,
        run_id: str,
        *,
        status: str,
        frames_analysed: int,
        media_start: datetime | None,
        media_end: datetime | None,
    ) -> None:
        """Close the run ``complete`` or ``failed``."""
        repo.finish_run(
            self.engine,
            run_id,
            status=status,
            frames_analysed=frames_analysed,
            media_start=media_start,
            media_end=media_end,
        )
