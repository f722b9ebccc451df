"""Bounded per-camera queues between reader threads and the detector, and what travels on them.

A live camera's queue drops its *oldest* frame when full (the detector is behind; fresh frames
matter more) and counts the drop; a file's queue makes the reader wait, so recordings never lose
frames. Events (an outage, the end of a source) are never dropped. All queues of one process
share one condition variable, so the batcher can wait for "any camera has something".
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime

from truckcount.types import Frame


@dataclass(frozen=True)
class Outage:
    """A stretch of time in which a camera delivered no frames.

    Sent twice on the camera's queue: when it is detected (``end`` None) and when the stream is
    back (``end`` set, same ``start``).

    Attributes:
        camera_id: the camera.
        start: capture time of the last frame before it, or when reading began if none came.
        reason: what went wrong, credentials masked, e.g. ``no data for 5 s``.
        end: capture time of the first frame after it; None while it lasts.
    """

    camera_id: str
    start: datetime
    reason: str
    end: datetime | None = None


@dataclass(frozen=True)
class SourceEnded:
    """A finite source (a file) has delivered its last frame; ``error`` says if it failed."""

    camera_id: str
    error: str | None = None


Item = Frame | Outage | SourceEnded


class FrameQueue:
    """A bounded FIFO of one camera's frames and events.

    Args:
        camera_id: the camera.
        capacity: frames held at most, >= 1.
        drop_oldest: True for live sources (drop), False for files (``put`` waits).
        cond: condition shared by every queue a batcher reads.
    """

    def __init__(
        self, camera_id: str, capacity: int, *, drop_oldest: bool, cond: threading.Condition
    ) -> None:
        if capacity < 1:
            raise ValueError(f"queue capacity: expected >= 1, got {capacity}")
        self.camera_id = camera_id
        self.capacity = capacity
        self.drop_oldest = drop_oldest
        self.cond = cond
        self.dropped = 0
        """Frames dropped since the queue was made."""
        self.closed = False
        self._items: deque[Item] = deque()
        self._frames = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def frames(self) -> int:
        """Frames waiting (events not counted)."""
        return self._frames

    def put(self, item: Item) -> bool:
        """Append an item; False when the queue was closed (the reader should stop)."""
        with self.cond:
            if isinstance(item, Frame):
                while self._frames >= self.capacity and not self.closed:
                    if self.drop_oldest:
                        self._drop_one()
                    else:
                        self.cond.wait(0.5)
            if self.closed:
                return False
            self._frames += isinstance(item, Frame)
            self._items.append(item)
            self.cond.notify_all()
            return True

    def pop(self) -> Item | None:
        """The oldest item, or None when empty; the caller holds ``cond``."""
        if not self._items:
            return None
        item = self._items.popleft()
        if isinstance(item, Frame):
            self._frames -= 1
        self.cond.notify_all()
        return item

    def close(self) -> None:
        """Wake and refuse every further ``put``."""
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def _drop_one(self) -> None:
        for i, queued in enumerate(self._items):
            if isinstance(queued, Frame):
                del self._items[i]
                self._frames -= 1
                self.dropped += 1
                return
