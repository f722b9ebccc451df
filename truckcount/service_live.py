"""Live cameras inside ``truckcount serve``: a ``truckcount.live`` session in a thread, observed.

``LiveRuntime`` runs the configured live cameras (stream URLs and devices; recordings go through
the watch folder) with the same ``LiveSession`` as ``truckcount live``, and answers
``camera_states()`` for ``GET /cameras`` (``status.LiveStatus``). The detector and the storage
writer are handed to the session wrapped, so every batch and crossing also lands in the
Prometheus metrics, without the live loop knowing about metrics; frame, drop and reconnect
counters are brought up to date from the session's readers and queues whenever the state is
read (each ``GET /cameras`` and ``GET /metrics``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from truckcount import metrics
from truckcount.config import AppConfig, CameraConfig
from truckcount.detector.infer import Detector
from truckcount.ingest.live import is_live
from truckcount.live import LiveOptions, LiveSession
from truckcount.status import LiveCameraState
from truckcount.storage.writer import StorageWriter
from truckcount.types import Crossing, Detections, Frame

log = logging.getLogger(__name__)


def live_cameras(cfg: AppConfig) -> list[CameraConfig]:  # the same rule as ``serve`` uses
    """The configured cameras whose source is a stream or a device (not a recording)."""
    return [c for c in cfg.cameras if c.source and is_live(c.source)]


class MeteredDetector:
    """A detector that also counts frames analysed per camera, batch sizes and latency."""

    def __init__(self, inner: Detector) -> None:
        self.inner = inner
        self.analysed: Counter[str] = Counter()
        self.last_frame: dict[str, datetime] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def predict(self, frames: list[Frame]) -> list[Detections]:
        """``Detector.predict``, timed and counted."""
        began = time.perf_counter()
        found = self.inner.predict(frames)
        metrics.DETECTOR_LATENCY.observe(time.perf_counter() - began)
        metrics.DETECTOR_BATCH_SIZE.observe(len(frames))
        for camera_id, n in Counter(f.camera_id for f in frames).items():
            metrics.FRAMES_ANALYSED.labels(camera_id).inc(n)
            self.analysed[camera_id] += n
        for f in frames:
            self.last_frame[f.camera_id] = max(f.ts, self.last_frame.get(f.camera_id, f.ts))
        return found


class MeteredWriter:
    """A storage writer that also counts the crossings it is given."""

    def __init__(self, inner: StorageWriter) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def add_crossings(self, crossings: Sequence[Crossing]) -> None:
        """``StorageWriter.add_crossings``, counted."""
        self.inner.add_crossings(crossings)
        for c in crossings:
            metrics.CROSSINGS.labels(
                c.camera_id, c.line_id, c.class_name.value, c.direction_name
            ).inc()


class LiveRuntime:
    """The service's live cameras: start, observe, stop (see the module docstring)."""

    def __init__(self, cfg: AppConfig, cameras: Sequence[CameraConfig]) -> None:
        self.stop_event = threading.Event()
        self.writer = StorageWriter(cfg.storage.url, cfg.storage.spool_dir)
        self.detector = MeteredDetector(Detector(cfg.detector))
        writer: Any = MeteredWriter(self.writer)  # duck-typed like the detector
        detector: Any = self.detector
        self.session = LiveSession(cfg, cameras, writer, detector)
        self._thread = threading.Thread(target=self._run, name="live-cameras", daemon=True)
        self._synced: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start reading, detecting and counting in a background thread."""
        self._thread.start()

    def _run(self) -> None:
        try:
            report = self.session.run(LiveOptions(), self.stop_event)
            log.info("live cameras stopped: %d segment runs", len(report.segments))
        except Exception:  # logged here: a thread's exception is otherwise lost
            log.exception("live cameras failed")

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the readers, close the open segments (their runs complete), close the writer."""
        self.stop_event.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("live cameras did not stop within %.0f s", timeout_s)
        self.writer.close()

    def camera_states(self) -> Mapping[str, LiveCameraState]:
        """Current state of every live camera; also brings the frame counters up to date."""
        states = {}
        for camera_id, cam in self.session.cams.items():
            seg = cam.segment
            last = self.detector.last_frame.get(camera_id)
            fps = None
            if seg is not None and seg.last > seg.first:
                fps = round(seg.frames / (seg.last - seg.first).total_seconds(), 3)
            outages = list(cam.reader.outages)
            if cam.ended:
                state = "ended"
            elif outages and outages[-1].end is None:
                state = "reconnecting"
            else:
                state = "streaming" if last else "connecting"
            dropped = cam.queue.dropped
            read = self.detector.analysed[camera_id] + dropped + cam.queue.frames
            self._sync(camera_id, read=read, dropped=dropped, reconnects=len(outages))
            if last is not None:
                metrics.LAST_FRAME.labels(camera_id).set(last.timestamp())
            states[camera_id] = LiveCameraState(camera_id, state, last, fps, len(outages), dropped)
        return states

    def _sync(self, camera_id: str, **totals: int) -> None:
        counters = {
            "read": metrics.FRAMES_READ,
            "dropped": metrics.FRAMES_DROPPED,
            "reconnects": metrics.RECONNECTS,
        }
        with self._lock:
            for name, total in totals.items():
                key = (camera_id, name)
                delta = total - self._synced.get(key, 0)
                if delta > 0:
                    counters[name].labels(camera_id).inc(delta)
                    self._synced[key] = total
