"""Count accuracy of the whole pipeline on labelled image sequences (``truckcount eval counts``).

For each sequence, the labels are linked into ground-truth tracks and counted by the real
``LineCounter``; the same images, in order and on the same clock, go through the real pipeline
(detector, tracker, line counter); the two sets of crossings are matched and compared, and the
detector's AP50 on those frames tells detection errors from tracking errors.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from truckcount.aggregator.evaluate import (
    CrossingPoint,
    MatchConfig,
    RecordingCounter,
    count_table,
    event_errors,
    grouped_errors,
    match_crossings,
)
from truckcount.aggregator.groundtruth import (
    BenchmarkSpec,
    LabelledFrame,
    SequenceSpec,
    ground_truth,
)
from truckcount.config import AppConfig, CameraConfig, ConfigError, DetectorConfig
from truckcount.detector.cascade import CascadeStats
from truckcount.detector.data import Sample, load_samples, read_image
from truckcount.detector.evaluate import average_precision
from truckcount.detector.infer import Detector
from truckcount.detector.label_fixes import LabelFixes
from truckcount.ingest.images import ImageSequence, open_image_sequence
from truckcount.pipeline import CameraStages, build_stages, process_frames
from truckcount.types import Crossing, Detections, Frame, RunInfo

log = logging.getLogger(__name__)
NOTHING = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


class _KeepingDetector(Detector):
    """The real detector, also keeping each frame's boxes (normalised xyxy) for AP."""

    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__(cfg)
        self.kept: dict[int, Detections] = {}

    def predict(self, frames: Sequence[Frame]) -> list[Detections]:
        out = super().predict(frames)
        for frame, dets in zip(frames, out, strict=True):
            w, h = frame.size
            scale = np.array([w, h, w, h], np.float32)
            self.kept[frame.index] = Detections(dets.xyxy / scale, dets.confidence, dets.class_id)
        return out


@dataclass(frozen=True)
class _Bench:
    """What every sequence of one evaluation shares."""

    data: Path
    cfg: AppConfig
    camera: CameraConfig
    detector: _KeepingDetector


@dataclass(frozen=True)
class SequenceResult:
    """True and predicted crossings of one sequence, and what else was measured on it."""

    spec: SequenceSpec
    true: list[CrossingPoint]
    pred: list[CrossingPoint]
    info: dict[str, Any]


def default_spec(samples: Sequence[Sample], camera: CameraConfig) -> BenchmarkSpec:
    """Every sequence of the folder at the camera's analysis rate, from its configured start."""
    names = sorted({s.sequence for s in samples})
    extra = {"start": camera.start} if camera.start else {}
    seqs = [SequenceSpec(name=n, fps=camera.analysis_fps, **extra) for n in names]
    return BenchmarkSpec(sequences=tuple(seqs))


def _choose_camera(cfg: AppConfig, camera_id: str | None) -> CameraConfig:
    if camera_id is not None:
        return cfg.camera(camera_id)
    if len(cfg.cameras) != 1:
        ids = ", ".join(c.id for c in cfg.cameras) or "none"
        raise ConfigError(f"pass --camera: the config has {len(cfg.cameras)} cameras ({ids})")
    return cfg.cameras[0]


def _only(frames: Iterator[Frame], indices: set[int]) -> Iterator[Frame]:
    """Frames with labels: an empty label file is a gap for the pipeline too."""
    return (f for f in frames if f.index in indices)


def _predict(
    bench: _Bench, spec: SequenceSpec, samples: Sequence[Sample]
) -> tuple[list[CrossingPoint], CascadeStats | None]:
    """Run the real pipeline on the labelled frames of one sequence."""
    cfg, camera, detector = bench.cfg, bench.camera, bench.detector
    run = RunInfo("eval", camera.id, spec.name, detector.version, cfg.digest(), datetime.now(UTC))
    base = build_stages(cfg, camera, run)
    counter = RecordingCounter.like(base.counter)
    files = ImageSequence.scan(bench.data / "images", spec.name)
    frames = open_image_sequence(
        files, camera_id=camera.id, start=spec.start, fps=spec.fps, first=spec.first, last=spec.last
    )
    crossings: list[Crossing] = []
    stages = CameraStages(base.tracker, counter, base.gate)
    process_frames(_only(frames, {s.index for s in samples}), detector, stages, crossings.extend)
    placed = counter.anchors.place(crossings, camera.lines, spec.name, spec.start)
    return placed, base.gate.stats() if base.gate else None


def _evaluate_sequence(bench: _Bench, spec: SequenceSpec, samples: list[Sample]) -> SequenceResult:
    """Ground truth, prediction and detection AP50 of one sequence."""
    h, w = read_image(samples[0].image_path).shape[:2]
    labelled = [LabelledFrame(s.index, s.boxes, s.classes) for s in samples]
    camera = bench.camera
    gt = ground_truth(labelled, camera, bench.cfg.counter, clock=spec.clock, size=(w, h))
    bench.detector.kept = {}
    pred, cascade = _predict(bench, spec, samples)
    size = bench.detector.input_size
    kept = [bench.detector.kept.get(s.index, NOTHING) for s in samples]  # none: cascade skipped
    ap = average_precision([(d.xyxy * size, d.confidence, d.class_id) for d in kept], samples, size)
    last = spec.last if spec.last is not None else samples[-1].index
    info = {
        **spec.model_dump(mode="json"),
        "last": last,
        "frames": len(samples),
        "unobserved_frames": last + 1 - spec.first - len(samples),
        "gt_tracks": len({int(i) for d in gt.tracked for i in np.asarray(d.tracker_id)}),
        "ap50": ap["ap50"],
    }
    if cascade is not None:
        info["cascade"] = {**asdict(cascade), "skip_rate": round(cascade.skip_rate, 4)}
    true = gt.anchors.place(gt.crossings, camera.lines, spec.name, spec.start)
    return SequenceResult(spec, true, pred, info)


def evaluate_counts(
    data: Path,
    cfg: AppConfig,
    spec: BenchmarkSpec | None = None,
    *,
    camera_id: str | None = None,
    match: MatchConfig | None = None,
    fixes: LabelFixes | None = None,
) -> dict[str, Any]:
    """Evaluate counting on the labelled sequences of a YOLO-format folder.

    Args:
        data: folder with ``images/``, ``labels/`` and ``data.yaml``.
        cfg: configuration: detector (weights), tracker, counter and the camera's lines.
        spec: the sequences; None evaluates every sequence at the camera's analysis rate.
        camera_id: camera whose lines are counted; None when the config has exactly one.
        match: crossing matching rules.
        fixes: class corrections applied to the labels before ground truth is linked.

    Returns:
        The report as one JSON-ready dict (see ``docs/counting.md``).
    """
    camera = _choose_camera(cfg, camera_id)
    samples = load_samples(data, fixes=fixes)
    spec = spec or default_spec(samples, camera)
    bench = _Bench(data, cfg, camera, _KeepingDetector(cfg.detector))
    results = []
    for seq in spec.sequences:
        chosen = [s for s in samples if s.sequence == seq.name and seq.covers(s.index)]
        if not chosen:
            raise ValueError(f"{data}: no labelled frames of sequence {seq.name!r} in range")
        log.info("sequence %s: %d labelled frames", seq.name, len(chosen))
        results.append(_evaluate_sequence(bench, seq, chosen))
    return build_report(results, camera, match or MatchConfig(), bench.detector.version)


def build_report(
    results: Sequence[SequenceResult], camera: CameraConfig, match: MatchConfig, version: str
) -> dict[str, Any]:
    """Counts, errors per group, matching and crossing lists as one JSON-ready dict."""
    true = [c for r in results for c in r.true]
    pred = [c for r in results for c in r.pred]
    names = [r.spec.name for r in results]
    result = match_crossings(true, pred, match)
    rows = count_table(true, pred, names, camera.lines, event_errors(result))
    groups: dict[str, list[str]] = {"all": names}
    for r in results:
        groups.setdefault(r.spec.role, []).append(r.spec.name)
        groups.setdefault(f"{r.spec.role} {r.spec.light}", []).append(r.spec.name)
        groups[r.spec.name] = [r.spec.name]
    fps = {r.spec.name: r.spec.fps for r in results}

    def points(cs: Sequence[CrossingPoint]) -> list[dict[str, object]]:
        return [c.as_dict(fps[c.sequence]) for c in cs]

    def pairs(ps: Sequence[tuple[CrossingPoint, CrossingPoint]]) -> list[dict[str, object]]:
        return [
            {"true": t.as_dict(fps[t.sequence]), "pred": p.as_dict(fps[p.sequence])} for t, p in ps
        ]

    return {
        "model_version": version,
        "camera": camera.id,
        "lines": [ln.model_dump(mode="json", by_alias=True) for ln in camera.lines],
        "match": match.model_dump(mode="json"),
        "sequences": [
            {**r.info, "matching": match_crossings(r.true, r.pred, match).summary()}
            for r in results
        ],
        "counts": [r.as_dict() for r in rows],
        "errors": grouped_errors(rows, groups),
        "matching": result.summary(),
        "crossings": {
            "matched": pairs(result.matched),
            "wrong_direction": pairs(result.wrong_direction),
            "double_counts": points(result.double_counts),
            "extras": points(result.extras),
            "misses": points(result.misses),
        },
    }


def baseline_view(report: dict[str, Any]) -> dict[str, Any]:
    """The report without the crossing lists: what the committed baseline keeps."""
    return {k: v for k, v in report.items() if k != "crossings"}
