"""Live cameras into storage: consecutive segment runs per camera, one batched detector for all.

A live stream never ends, but a run's crossings count only once the run is finished
``complete``. So each camera's stream is cut into *segments*, each its own complete run with its
coverage: a new segment starts every ``segment_seconds`` of capture time and after every outage.
The tracker and line counter of a camera live across segment boundaries, so a truck crossing at
a boundary counts once; its crossing is stored with the run in which its track ended (the
counter decides when the track ends), with the capture time at which it crossed. An outage
ends the segment at its last frame: the outage is the stretch without coverage, and the
segment's coverage row carries the reason in ``gap_reason``. Tracks cannot survive an outage,
so the counter is flushed into the closing segment and the tracker starts afresh.

Frames of every camera go through one ``Batcher`` into one detector; trackers and counters stay
per camera. Live queues drop their oldest frame when the detector falls behind and the drops are
stored as the segment's ``frames_dropped``; file sources never drop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from truckcount.config import AppConfig, CameraConfig, ConfigError
from truckcount.detector.infer import Detector
from truckcount.ingest.batcher import Batcher
from truckcount.ingest.errors import mask_url
from truckcount.ingest.live import is_live
from truckcount.ingest.queues import FrameQueue, Item, Outage, SourceEnded
from truckcount.ingest.reader import CameraReader, FileReader
from truckcount.pipeline import CameraStages, build_stages, detect, run_id_for
from truckcount.storage.database import StorageError
from truckcount.storage.writer import StorageWriter
from truckcount.types import Crossing, Detections, Frame, RunInfo

log = logging.getLogger(__name__)

KEEP_RECORDS = 1000
"""Finished segments and outages kept in memory per camera (all are in the database)."""


@dataclass(frozen=True)
class LiveOptions:
    """How long to run and how to batch.

    Attributes:
        duration_s: stop after this many seconds; None runs until ``stop`` is set.
        max_batch: frames per detector pass; None uses the detector's ``batch_size``.
        max_wait_s: how long a partial batch waits for more frames.
    """

    duration_s: float | None = None
    max_batch: int | None = None
    max_wait_s: float = 0.1


@dataclass(frozen=True)
class SegmentRecord:
    """One finished segment run."""

    run_id: str
    camera_id: str
    start: datetime
    end: datetime
    frames: int
    dropped: int
    crossings: int
    gap_reason: str | None


@dataclass(frozen=True)
class LiveReport:
    """What a live session did: totals, and its latest segments and outages.

    A process that runs for months keeps only the latest ``KEEP_RECORDS`` segments and outages
    per camera in memory; the database holds all of them (runs and coverage).
    """

    segment_runs: int
    frames: int
    crossings: int
    segments: tuple[SegmentRecord, ...]
    outages: tuple[Outage, ...]


@dataclass
class _Segment:
    run: RunInfo
    first: datetime
    last: datetime
    dropped_before: int
    frames: int = 0
    crossings: int = 0


@dataclass
class _Camera:
    """One camera's reader, queue, per-camera stages and open segment."""

    camera: CameraConfig
    queue: FrameQueue
    reader: CameraReader | FileReader
    stages: CameraStages
    segment: _Segment | None = None
    origin: datetime | None = None
    ended: bool = False
    done: deque[SegmentRecord] = field(default_factory=lambda: deque(maxlen=KEEP_RECORDS))
    runs: int = 0
    frames: int = 0
    crossings: int = 0


class LiveSession:
    """Runs the configured cameras until stopped; see the module docstring.

    Args:
        cfg: the application config (detector, tracker, counter, storage).
        cameras: the cameras to run; each needs a ``source``.
        writer: where runs, crossings and coverage go (spooled while the database is down).
        detector: the shared detector.
    """

    def __init__(
        self,
        cfg: AppConfig,
        cameras: Sequence[CameraConfig],
        writer: StorageWriter,
        detector: Detector,
    ) -> None:
        self.cfg = cfg
        self.writer = writer
        self.detector = detector
        self.cond = threading.Condition()
        self.cams = {c.id: self._camera(c) for c in cameras}

    def run(self, options: LiveOptions, stop: threading.Event) -> LiveReport:
        """Read, detect, count and store until ``stop``, the duration, or every file ends."""
        max_batch = options.max_batch or self.cfg.detector.batch_size
        batcher = Batcher(
            [c.queue for c in self.cams.values()], self.cond, max_batch, options.max_wait_s
        )
        deadline = None if options.duration_s is None else time.monotonic() + options.duration_s
        for cam in self.cams.values():
            cam.reader.start()
        failed = True
        try:
            while not stop.is_set() and not all(c.ended for c in self.cams.values()):
                if deadline is not None and time.monotonic() >= deadline:
                    break
                self._process(batcher.next_batch(timeout_s=0.25))
            self._drain(batcher)
            failed = False
        finally:
            self._shut_down(failed)
        return self._report()

    def segments(self) -> list[SegmentRecord]:
        """Segments finished so far, every camera."""
        return [s for c in self.cams.values() for s in list(c.done)]

    def _drain(self, batcher: Batcher) -> None:
        """Stop the readers and process what they had queued, so no received frame is lost."""
        for cam in self.cams.values():
            cam.reader.stop()
        while items := batcher.next_batch(timeout_s=0):
            self._process(items)

    def _camera(self, camera: CameraConfig) -> _Camera:
        live = is_live(camera.source or "")
        queue = FrameQueue(camera.id, camera.queue_frames, drop_oldest=live, cond=self.cond)
        reader = CameraReader(camera, queue) if live else FileReader(camera, queue)
        return _Camera(camera, queue, reader, self._stages(camera))

    def _stages(self, camera: CameraConfig) -> CameraStages:
        placeholder = RunInfo(
            "pending", camera.id, "", self.detector.version, "", datetime.now(UTC)
        )
        return build_stages(self.cfg, camera, placeholder)

    def _process(self, items: list[Item]) -> None:
        frames = [i for i in items if isinstance(i, Frame)]
        stages_of = lambda cam_id: self.cams[cam_id].stages  # noqa: E731
        found = iter(detect(self.detector, frames, stages_of) if frames else [])
        for item in items:
            cam = self.cams[item.camera_id]
            if isinstance(item, Frame):
                self._on_frame(cam, item, next(found))
            elif isinstance(item, Outage):
                self._on_outage(cam, item)
            elif isinstance(item, SourceEnded):
                self._close(cam, None, failed=False)
                cam.ended = True

    def _on_frame(self, cam: _Camera, frame: Frame, dets: Detections | None) -> None:
        seg = cam.segment
        if seg is not None and frame.ts - seg.first >= timedelta(
            seconds=cam.camera.segment_seconds
        ):
            self._close(cam, None, failed=False, end=frame.ts)
            seg = None
        if seg is None:
            seg = cam.segment = self._begin(cam, frame.ts)
        if cam.origin is None:
            cam.origin = frame.ts
        if dets is not None:  # None: the cascade cleared it; tracks just see a longer gap
            tracked = cam.stages.tracker.update(dets, (frame.ts - cam.origin).total_seconds())
            self._store(cam, cam.stages.counter.update(frame, tracked))
        seg.frames += 1
        seg.last = frame.ts

    def _on_outage(self, cam: _Camera, outage: Outage) -> None:
        if outage.end is not None:
            log.info("camera %s: outage %s .. %s recorded", cam.camera.id, outage.start, outage.end)
            return
        self._close(cam, outage.reason, failed=False)
        cam.stages = self._stages(cam.camera)  # no track survives an outage
        cam.origin = None

    def _begin(self, cam: _Camera, first: datetime) -> _Segment:
        source = cam.camera.source or ""
        key = mask_url(source) if is_live(source) else str(Path(source).resolve())
        version = self.detector.version
        run = RunInfo(
            run_id=run_id_for(cam.camera.id, key, first, version),
            camera_id=cam.camera.id,
            source=key,
            model_version=version,
            config_hash=self.cfg.digest(),
            started_at=datetime.now(UTC),
        )
        self.writer.begin_run(run, cam.camera.timezone)
        cam.stages.counter.run_id = run.run_id
        log.info("camera %s: segment run %s begins at %s", cam.camera.id, run.run_id, first)
        return _Segment(run, first, first, cam.queue.dropped)

    def _store(self, cam: _Camera, crossings: list[Crossing]) -> None:
        if crossings and cam.segment is not None:
            self.writer.add_crossings(crossings)
            cam.segment.crossings += len(crossings)

    def _close(
        self, cam: _Camera, gap_reason: str | None, *, failed: bool, end: datetime | None = None
    ) -> None:
        """Finish the open segment: flush the counter unless the stream continues (``end``)."""
        seg = cam.segment
        if seg is None:
            return
        if end is None and not failed:
            self._store(cam, cam.stages.counter.flush())
        cover_end = end or seg.last + timedelta(seconds=1 / cam.camera.analysis_fps)
        dropped = cam.queue.dropped - seg.dropped_before
        run_id = seg.run.run_id
        slots = cam.stages.presence.drain() if cam.stages.presence is not None else []
        if not failed:
            self.writer.add_coverage(run_id, seg.first, cover_end, seg.frames, dropped, gap_reason)
            self.writer.add_presence(run_id, slots)
        status = "failed" if failed else "complete"
        span = {"media_start": seg.first, "media_end": seg.last}
        self.writer.finish_run(run_id, status=status, frames_analysed=seg.frames, **span)
        record = SegmentRecord(
            run_id,
            cam.camera.id,
            seg.first,
            cover_end,
            seg.frames,
            dropped,
            seg.crossings,
            gap_reason,
        )
        cam.done.append(record)
        cam.runs, cam.frames, cam.crossings = (
            cam.runs + 1,
            cam.frames + seg.frames,
            cam.crossings + seg.crossings,
        )
        cam.segment = None

    def _shut_down(self, failed: bool) -> None:
        for cam in self.cams.values():
            cam.reader.stop()
        for cam in self.cams.values():
            try:
                self._close(cam, None, failed=failed)
            except StorageError:  # one camera's storage error must not keep the others open
                log.exception("camera %s: could not close its segment", cam.camera.id)

    def _report(self) -> LiveReport:
        segments = self.segments()
        outages = [o for c in self.cams.values() for o in c.reader.outages]
        cams = self.cams.values()
        totals = (sum(c.runs for c in cams), sum(c.frames for c in cams))
        return LiveReport(*totals, sum(c.crossings for c in cams), tuple(segments), tuple(outages))


def select_cameras(cfg: AppConfig, camera_ids: Sequence[str]) -> list[CameraConfig]:
    """The named cameras (all configured ones with a source when none is named).

    Raises:
        ConfigError: an unknown id, a camera without a source, or nothing to run.
    """
    cameras = [cfg.camera(i) for i in camera_ids] or [c for c in cfg.cameras if c.source]
    if not cameras:
        raise ConfigError("no camera with a `source` is configured")
    for cam in cameras:
        if not cam.source:
            raise ConfigError(f"camera {cam.id!r}: no `source` configured")
    return cameras


def run_live(
    cfg: AppConfig,
    camera_ids: Sequence[str],
    options: LiveOptions,
    stop: threading.Event,
) -> LiveReport:
    """Run cameras live into the configured database until ``stop`` or ``options.duration_s``.

    Raises:
        ConfigError: see ``select_cameras``.
        StorageError: the database cannot be opened or written.
    """
    cameras = select_cameras(cfg, camera_ids)
    writer = StorageWriter(cfg.storage.url, cfg.storage.spool_dir)
    try:
        session = LiveSession(cfg, cameras, writer, Detector(cfg.detector))
        return session.run(options, stop)
    finally:
        writer.close()
