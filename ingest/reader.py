"""One thread per camera feeding its bounded queue: reconnect with back-off, a watchdog, outages.

A live camera's reader connects, reads until the stream ends or fails, records an ``Outage``,
waits (exponential back-off with jitter, reset by the first frame) and connects again, until
stopped. PyAV's open and read timeouts end most stalls inside FFmpeg. The watchdog catches the
rest: when no frame has come for ``stall_timeout_s`` while connecting or reading (a peer that
trickles bytes that never make a frame, a call stuck in a library), it records the outage and
starts a new reader thread. The stuck one is *abandoned*, not killed: Python cannot interrupt a
thread inside C code, and closing its container from another thread could crash the process. It
holds a generation number; once stale it discards whatever it still reads and exits at its next
frame or timeout. Every camera has its own threads, so one failing camera never stalls another.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from datetime import datetime

from av.container import InputContainer

from truckcount.config import CameraConfig
from truckcount.ingest.errors import SourceError, mask_url
from truckcount.ingest.live import LiveClock, open_stream, read_stream
from truckcount.ingest.queues import FrameQueue, Outage, SourceEnded
from truckcount.ingest.source import open_source
from truckcount.types import Frame

logger = logging.getLogger(__name__)

JITTER = 0.2
"""Back-off delays are multiplied by a uniform factor in [1 - JITTER, 1 + JITTER]."""
KEEP_OUTAGES = 1000
"""Outages kept in memory per camera; a 24/7 process must not grow (coverage keeps them all)."""
WATCH_INTERVAL_S = 0.25
"""How often the watchdog looks at each camera."""


def backoff_delay(failures: int, camera: CameraConfig, rng: random.Random) -> float:
    """Seconds to wait before reconnecting after ``failures`` failed attempts in a row (>= 1)."""
    base = min(camera.reconnect_max_s, camera.reconnect_min_s * 2 ** max(failures - 1, 0))
    return base * rng.uniform(1 - JITTER, 1 + JITTER)


class CameraReader:
    """Reads one live camera into its queue until ``stop``; see the module docstring.

    Args:
        camera: source URL or device, timeouts, back-off and ``analysis_fps``.
        queue: the camera's queue (``drop_oldest=True``).
        seed: seeds the back-off jitter (tests); None for a random seed.
    """

    def __init__(self, camera: CameraConfig, queue: FrameQueue, seed: int | None = None) -> None:
        self.camera = camera
        self.queue = queue
        self.clock = LiveClock()
        self.outages: deque[Outage] = deque(maxlen=KEEP_OUTAGES)
        """The latest outages, ended ones with ``end`` set; the last may still be open."""
        self.abandoned = 0
        """Reader threads the watchdog gave up on."""
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._generation = 0
        self._busy_since: float | None = None
        self._failures = 0
        self._index = 0
        self._last_ts: datetime | None = None
        self._started = self.clock.received()
        self._watchdog = threading.Thread(
            target=self._watch, name=f"watchdog-{camera.id}", daemon=True
        )

    @property
    def name(self) -> str:
        """The camera's source, credentials masked."""
        return mask_url(self.camera.source or "")

    @property
    def frames_read(self) -> int:
        """Frames this reader has taken from the camera since it started."""
        with self._lock:
            return self._index

    def start(self) -> None:
        """Start the reader and its watchdog."""
        self._spawn(delay=0.0)
        self._watchdog.start()

    def stop(self) -> None:
        """Stop reading; threads exit at their next frame or timeout (they are daemons)."""
        self._stop.set()
        self.queue.close()

    def _spawn(self, delay: float) -> None:
        with self._lock:
            self._generation += 1
            gen = self._generation
        thread = threading.Thread(
            target=self._run, args=(gen, delay), name=f"read-{self.camera.id}-{gen}", daemon=True
        )
        thread.start()

    def _current(self, gen: int) -> bool:
        return gen == self._generation and not self._stop.is_set()

    def _run(self, gen: int, delay: float) -> None:
        if delay:
            self._stop.wait(delay)
        while self._current(gen):
            reason = self._connect_and_read(gen)
            if not self._current(gen):
                return
            self._begin_outage(gen, reason)
            with self._lock:
                self._busy_since = None
                self._failures += 1
                wait = backoff_delay(self._failures, self.camera, self._rng)
            logger.debug("camera %s: reconnecting in %.1f s", self.camera.id, wait)
            self._stop.wait(wait)

    def _connect_and_read(self, gen: int) -> str:
        with self._lock:
            if not self._current(gen):
                return "abandoned"
            self._busy_since = time.monotonic()
        try:
            container = open_stream(self.camera)
        except SourceError as exc:
            return str(exc)
        try:
            return self._read(gen, container)
        except SourceError as exc:
            return str(exc)
        finally:
            container.close()  # only this thread ever touches its container

    def _read(self, gen: int, container: InputContainer) -> str:
        for frame in read_stream(container, self.camera, self.clock, self._index):
            if not self._on_frame(gen, frame):
                return "abandoned"
        return f"camera {self.camera.id!r}: {self.name}: the stream ended"

    def _on_frame(self, gen: int, frame: Frame) -> bool:
        with self._lock:
            if not self._current(gen):
                return False
            self._busy_since = time.monotonic()
            self._failures = 0
            self._index = frame.index + 1
            self._last_ts = frame.ts
            ended = self._end_outage(frame.ts)
        if ended is not None:
            self.queue.put(ended)
        return self.queue.put(frame)

    def _end_outage(self, ts: datetime) -> Outage | None:
        if not self.outages or self.outages[-1].end is not None:
            return None
        ended = Outage(self.camera.id, self.outages[-1].start, self.outages[-1].reason, ts)
        self.outages[-1] = ended
        gap = (ts - ended.start).total_seconds()
        logger.warning(
            "camera %s: stream is back after %.1f s without frames", ended.camera_id, gap
        )
        return ended

    def _begin_outage(self, gen: int, reason: str) -> None:
        with self._lock:
            if not self._current(gen):
                return
            if self.outages and self.outages[-1].end is None:
                logger.debug("camera %s: still down: %s", self.camera.id, reason)
                return
            outage = Outage(self.camera.id, self._last_ts or self._started, reason)
            self.outages.append(outage)
        logger.warning("camera %s: outage: %s", self.camera.id, reason)
        self.queue.put(outage)

    def _watch(self) -> None:
        stall = self.camera.stall_timeout_s
        while not self._stop.wait(WATCH_INTERVAL_S):
            since = self._busy_since
            if since is None or time.monotonic() - since <= stall:
                continue
            with self._lock:
                self._busy_since = None
                gen = self._generation
            self._begin_outage(
                gen, f"camera {self.camera.id!r}: {self.name}: no frame for {stall:g} s"
            )
            self.abandoned += 1
            with self._lock:
                self._failures += 1
                wait = backoff_delay(self._failures, self.camera, self._rng)
            self._spawn(delay=wait)


class FileReader:
    """Reads a recording into its queue on a thread; ``put`` waits, so no frame is dropped.

    Args:
        camera: the camera; ``source`` is a file and ``start`` its first frame's time.
        queue: the camera's queue (``drop_oldest=False``).
    """

    def __init__(self, camera: CameraConfig, queue: FrameQueue) -> None:
        self.camera = camera
        self.queue = queue
        self.outages: deque[Outage] = deque(maxlen=KEEP_OUTAGES)
        self._thread = threading.Thread(target=self._run, name=f"read-{camera.id}", daemon=True)

    def start(self) -> None:
        """Start reading."""
        self._thread.start()

    def stop(self) -> None:
        """Stop reading at the next frame."""
        self.queue.close()

    def _run(self) -> None:
        try:
            for frame in open_source(self.camera):
                if not self.queue.put(frame):
                    return
        except SourceError as exc:
            logger.error("camera %s: %s", self.camera.id, exc)
            self.queue.put(SourceEnded(self.camera.id, str(exc)))
            return
        self.queue.put(SourceEnded(self.camera.id))
