"""The one pipeline every entry point uses.

frames -> detector (batched) -> tracker -> line counter -> crossings -> storage. Live streams and
recorded files differ only in the frame source and its clock.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt

from truckcount.aggregator.lines import LineCounter
from truckcount.aggregator.presence import PresenceTally
from truckcount.aggregator.tracker import Tracker
from truckcount.config import AppConfig, CameraConfig
from truckcount.detector.cascade import Cascade, watched_region
from truckcount.detector.crop_classifier import CropClassifier
from truckcount.detector.infer import Detector
from truckcount.detector.presence import PresenceClassifier
from truckcount.detector.weights import pick_device
from truckcount.ingest import is_url, open_source, probe_video
from truckcount.ingest.readahead import read_ahead
from truckcount.ingest.timestamps import recording_start
from truckcount.storage.writer import StorageWriter
from truckcount.types import Crossing, Detections, Frame, RunInfo

log = logging.getLogger(__name__)

CrossingSink = Callable[[Sequence[Crossing]], object]


@dataclass(frozen=True)
class CameraStages:
    """The per-camera state-holding stages (the detector is shared between cameras)."""

    tracker: Tracker
    counter: LineCounter
    gate: Cascade | None = None
    presence: PresenceTally | None = None


StagesOf = Callable[[str], CameraStages]
"""A camera id's stages (a batch may hold frames of several cameras)."""


@dataclass(frozen=True)
class StreamStats:
    """What one pass over a frame source did."""

    frames: int
    crossings: int
    first_ts: datetime | None
    last_ts: datetime | None


def _batched(frames: Iterable[Frame], size: int) -> Iterator[list[Frame]]:
    batch: list[Frame] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _media_seconds(frame: Frame, origin: datetime) -> float:
    return (frame.ts - origin).total_seconds()


def process_frames(
    frames: Iterable[Frame], detector: Detector, stages: CameraStages, sink: CrossingSink
) -> StreamStats:
    """Run frames through detection, tracking and counting; hand crossings to ``sink``."""
    n_frames = n_cross = 0
    first: datetime | None = None
    last: datetime | None = None
    bs = detector.cfg.batch_size
    for batch in _batched(read_ahead(frames, 2 * bs), bs):  # decode the next batch meanwhile
        first = first or batch[0].ts
        for frame, dets in zip(batch, detect(detector, batch, lambda _: stages), strict=True):
            if dets is None:
                continue  # cleared by the cascade: tracks just see a longer gap
            tracked = stages.tracker.update(dets, _media_seconds(frame, first))
            crossings = stages.counter.update(frame, tracked)
            if crossings:
                sink(crossings)
                n_cross += len(crossings)
        n_frames += len(batch)
        last = batch[-1].ts
    rest = stages.counter.flush()
    if rest:
        sink(rest)
        n_cross += len(rest)
    return StreamStats(n_frames, n_cross, first, last)


def detect(
    detector: Detector, frames: Sequence[Frame], stages_of: StagesOf
) -> list[Detections | None]:
    """Detections for each frame, in one detector batch; None where the camera's cascade skipped
    it. The truck-presence classifier (feature and cascade share it) sees every frame once."""
    probs = _presence_probs(frames, stages_of)
    keep: list[bool] = [True] * len(frames)
    for cam_id, idx in _by_camera(frames).items():
        stages = stages_of(cam_id)
        cam_frames = [frames[i] for i in idx]
        cam_probs = None if probs is None else probs[idx]
        if stages.presence is not None and cam_probs is not None:
            stages.presence.observe(cam_frames, cam_probs)
        if stages.gate is not None:
            # the cascade's classifier is the feature's (``presence.weights``): reuse its answer
            chosen = stages.gate.select(cam_frames, cam_probs)
            for i, k in zip(idx, chosen, strict=True):
                keep[i] = k
    found = iter(detector.predict([f for f, k in zip(frames, keep, strict=True) if k]))
    out: list[Detections | None] = []
    for frame, k in zip(frames, keep, strict=True):
        dets = next(found) if k else None
        gate = stages_of(frame.camera_id).gate
        if dets is not None and gate is not None:
            gate.check(frame, dets)
        out.append(dets)
    return out


def _by_camera(frames: Sequence[Frame]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i, frame in enumerate(frames):
        groups.setdefault(frame.camera_id, []).append(i)
    return groups


def _presence_probs(frames: Sequence[Frame], stages_of: StagesOf) -> npt.NDArray[np.float32] | None:
    """Truck-presence probabilities of all frames, when any of their cameras tallies them."""
    tallies = [stages_of(f.camera_id).presence for f in frames]
    used = next((t for t in tallies if t is not None), None)
    if used is None:
        return None
    return used.classifier.probabilities([f.image for f in frames])


@functools.lru_cache(maxsize=4)
def load_presence(path: Path, device: str) -> PresenceClassifier:
    """The truck-presence classifier, loaded once per process and shared by all cameras."""
    return PresenceClassifier(path, pick_device(device))


@functools.lru_cache(maxsize=4)
def load_crop_classifier(path: Path, device: str, runtime: str) -> CropClassifier:
    """The crop classifier, loaded once per process and shared by all cameras' counters.

    It runs on the detector's device and runtime (eager PyTorch, or ONNX Runtime)."""
    return CropClassifier(path, pick_device(device), runtime)


def build_gate(cfg: AppConfig, camera: CameraConfig) -> Cascade | None:
    """The camera's cascade when ``cascade.enabled``, else None."""
    if not cfg.cascade.enabled:
        return None
    weights = cfg.presence.weights if cfg.cascade.use_presence else None
    presence = load_presence(weights, cfg.detector.device) if weights else None
    region = watched_region(camera.lines, cfg.cascade.region_margin)
    score = min(cfg.tracker.high_threshold, cfg.tracker.new_track_threshold)
    return Cascade(cfg.cascade, region, cfg.counter.classes, score, presence)


def build_presence(cfg: AppConfig, camera: CameraConfig) -> PresenceTally | None:
    """The camera's truck-presence tally when ``presence.weights`` is set, else None."""
    weights = cfg.presence.weights
    if weights is None:
        return None
    classifier = load_presence(weights, cfg.detector.device)
    return PresenceTally(camera.id, classifier, cfg.presence.threshold)


def run_id_for(camera_id: str, source: str, start: datetime, model_version: str) -> str:
    """Same camera, source, start and model -> same run id, so a rerun replaces its results."""
    key = "\n".join([camera_id, source, start.astimezone(UTC).isoformat(), model_version])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def build_stages(cfg: AppConfig, camera: CameraConfig, run: RunInfo) -> CameraStages:
    """Fresh tracker and counter for one camera and run."""
    return CameraStages(
        tracker=Tracker(cfg.tracker),
        counter=LineCounter(
            camera.id,
            camera.lines,
            cfg.counter,
            model_version=run.model_version,
            run_id=run.run_id,
            track_timeout_s=cfg.tracker.lost_seconds,
            classifier=(
                load_crop_classifier(
                    cfg.detector.classifier, cfg.detector.device, cfg.detector.runtime
                )
                if cfg.detector.classifier is not None
                else None
            ),
        ),
        gate=build_gate(cfg, camera),
        presence=build_presence(cfg, camera),
    )


def _source_key(source: str) -> str:
    return source if is_url(source) else str(Path(source).resolve())


def run_recording(
    cfg: AppConfig,
    camera_id: str,
    *,
    source: str | None = None,
    start: datetime | None = None,
    detector: Detector | None = None,
) -> tuple[RunInfo, StreamStats]:
    """Process one recording of one camera into the configured database, idempotently.

    ``detector`` reuses a loaded model (one per ``cfg.detector``) across recordings.
    """
    camera = cfg.camera(camera_id)
    source = source or camera.source
    start = start or camera.start
    if source is None:
        raise ValueError(f"camera {camera_id!r}: no source given (pass a video file)")
    if start is None and not is_url(source):  # file name, creation_time, mtime, per camera
        start = recording_start(camera, Path(source)).ts
    if start is None:
        raise ValueError(
            f"camera {camera_id!r}: the recording's wall-clock start is unknown: "
            "pass --start (ISO 8601 with offset) or set `start` in the config"
        )
    camera = camera.model_copy(update={"source": source, "start": start})
    if not is_url(source):
        probe_video(Path(source))  # a missing or corrupt file fails before the model loads
    frames = open_source(camera, start=start)
    detector = detector or Detector(cfg.detector)
    writer = StorageWriter(cfg.storage.url, cfg.storage.spool_dir)
    run = RunInfo(
        run_id=run_id_for(camera.id, _source_key(source), start, detector.version),
        camera_id=camera.id,
        source=_source_key(source),
        model_version=detector.version,
        config_hash=cfg.digest(),
        started_at=datetime.now(UTC),
    )
    try:
        return run, _record_run(writer, cfg, camera, run, (frames, detector))
    finally:
        writer.close()


def _record_run(
    writer: StorageWriter,
    cfg: AppConfig,
    camera: CameraConfig,
    run: RunInfo,
    work: tuple[Iterable[Frame], Detector],
) -> StreamStats:
    """Process the frames as one run through ``writer``: crossings as they come, then coverage
    and completion; a failure marks the run failed. While the database is unreachable the
    writer spools and the frame loop keeps going."""
    frames, detector = work
    writer.begin_run(run, camera.timezone)
    log.info("run %s: camera %s, model %s", run.run_id, camera.id, run.model_version)
    stages = build_stages(cfg, camera, run)
    try:
        stats = process_frames(frames, detector, stages, writer.add_crossings)
    except BaseException:
        writer.finish_run(
            run.run_id, status="failed", frames_analysed=0, media_start=None, media_end=None
        )
        raise
    if stats.first_ts is not None and stats.last_ts is not None:
        frame_s = timedelta(seconds=1 / camera.analysis_fps)
        writer.add_coverage(run.run_id, stats.first_ts, stats.last_ts + frame_s, stats.frames)
    if stages.presence is not None:
        writer.add_presence(run.run_id, stages.presence.drain())
    writer.finish_run(
        run.run_id,
        status="complete",
        frames_analysed=stats.frames,
        media_start=stats.first_ts,
        media_end=stats.last_ts,
    )
    log.info("run %s: %d frames, %d crossings", run.run_id, stats.frames, stats.crossings)
    return stats
