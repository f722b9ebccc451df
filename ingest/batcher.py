"""Gather frames from every camera's queue into one detector batch.

A batch is sent when it holds ``max_batch`` frames or ``max_wait_s`` after its first item arrived,
whichever comes first, so a busy system runs full batches and a quiet one adds at most
``max_wait_s`` of latency. Cameras are taken round-robin, one item at a time, so a camera with a
full queue cannot starve the others; each camera's items keep their order, events included.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from truckcount.ingest.queues import FrameQueue, Item
from truckcount.types import Frame


class Batcher:
    """Round-robin gathering over queues that share one condition variable.

    Args:
        queues: one per camera, all built with ``cond``.
        cond: the shared condition.
        max_batch: frames per batch at most, >= 1.
        max_wait_s: how long a partial batch may wait for more frames, >= 0.
    """

    def __init__(
        self,
        queues: Sequence[FrameQueue],
        cond: threading.Condition,
        max_batch: int,
        max_wait_s: float,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch: expected >= 1, got {max_batch}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s: expected >= 0, got {max_wait_s}")
        if any(q.cond is not cond for q in queues):
            raise ValueError("every queue must share the batcher's condition")
        self.queues = list(queues)
        self.cond = cond
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._next = 0

    def next_batch(self, timeout_s: float) -> list[Item]:
        """Items for one detector pass, in per-camera order; empty after ``timeout_s`` idle.

        Frames in the result number at most ``max_batch``; events ride along with them.
        """
        with self.cond:
            if not self.cond.wait_for(self._waiting, timeout_s):
                return []
            deadline = time.monotonic() + self.max_wait_s
            while self._frames() < self.max_batch and not self._events():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            return self._take()

    def _waiting(self) -> bool:
        return any(len(q) for q in self.queues)

    def _frames(self) -> int:
        return sum(q.frames for q in self.queues)

    def _events(self) -> bool:
        return any(len(q) > q.frames for q in self.queues)

    def _take(self) -> list[Item]:
        out: list[Item] = []
        frames = 0
        n = len(self.queues)
        idle = 0
        while frames < self.max_batch and idle < n:
            queue = self.queues[self._next % n]
            self._next += 1
            item = queue.pop()
            if item is None:
                idle += 1
                continue
            idle = 0
            out.append(item)
            frames += isinstance(item, Frame)
        return out
