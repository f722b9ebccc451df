"""Ground-truth tracks and crossings from per-frame box labels.

Labelled boxes of consecutive frames of one sequence are linked into tracks (class-agnostic,
Hungarian on IoU plus centre distance to a constant-velocity prediction), then fed with their
track ids to the real ``LineCounter``, so ground truth and prediction are counted by exactly the
same rule, class vote included.

A frame is *observed* when it has a non-empty label file. A missing index or an empty label file
is a gap, not an empty road: a track may bridge at most ``max_gap`` unobserved or unlabelled
frames; a longer gap ends every track, so a vehicle that crossed the line unseen is not counted
as crossing (nor is one counted twice).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import yaml
from pydantic import Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError
from scipy.optimize import linear_sum_assignment

from truckcount.aggregator.evaluate import AnchorLog, RecordingCounter
from truckcount.aggregator.tracker import iou_matrix
from truckcount.config import CameraConfig, ConfigError, CounterConfig, StrictModel
from truckcount.config_base import describe
from truckcount.types import Crossing, Detections, Frame

_GATED = 1e6
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class LinkConfig(StrictModel):
    """How labelled boxes of neighbouring frames are linked into ground-truth tracks."""

    max_gap: int = Field(
        2, ge=0, le=10, description="unobserved frames (missing, unlabelled) a track may bridge"
    )
    min_iou: float = Field(0.1, ge=0, le=1, description="IoU with the prediction that links")
    max_distance: float = Field(
        0.6,
        ge=0,
        le=3,
        description="or: centre distance to the predicted box, in its diagonals, that links",
    )
    max_first_distance: float = Field(
        0.8,
        ge=0,
        le=3,
        description="the same for a track seen once (no velocity yet to predict with)",
    )
    max_size_ratio: float = Field(
        2.0, ge=1, description="largest change of box width or height between linked boxes"
    )


@dataclass(frozen=True)
class LabelledFrame:
    """One observed frame of a labelled sequence.

    Attributes:
        index: frame index within the sequence.
        boxes: (N, 4) float32 xyxy boxes normalised to [0, 1].
        classes: (N,) int64 merged class ids.
    """

    index: int
    boxes: npt.NDArray[np.float32]
    classes: npt.NDArray[np.int64]


@dataclass
class _Open:
    """A ground-truth track still open for linking; coordinates are normalised."""

    track_id: int
    box: npt.NDArray[np.float64]
    index: int
    velocity: npt.NDArray[np.float64]  # per frame, of x1 y1 x2 y2
    seen: int = 1

    def predicted(self, index: int) -> npt.NDArray[np.float64]:
        return self.box + self.velocity * (index - self.index)


def link_tracks(frames: Sequence[LabelledFrame], cfg: LinkConfig | None = None) -> list[np.ndarray]:
    """Give every labelled box a ground-truth track id.

    Args:
        frames: the observed frames of one sequence, in increasing index order.
        cfg: linking rules.

    Returns:
        One (N,) int64 array of positive track ids per frame, aligned with its boxes.
    """
    cfg = cfg or LinkConfig()
    open_tracks: list[_Open] = []
    next_id = 1
    out: list[np.ndarray] = []
    last_index: int | None = None
    for frame in frames:
        if last_index is not None and frame.index <= last_index:
            raise ValueError(
                f"link_tracks: expected increasing frame indices, got {frame.index} "
                f"after {last_index}"
            )
        last_index = frame.index
        open_tracks = [t for t in open_tracks if frame.index - t.index - 1 <= cfg.max_gap]
        boxes = np.asarray(frame.boxes, np.float64).reshape(-1, 4)
        ids = np.zeros(len(boxes), np.int64)
        pairs = _assign(open_tracks, boxes, frame.index, cfg)
        for ti, bi in pairs:
            ids[bi] = open_tracks[ti].track_id
            _extend(open_tracks[ti], boxes[bi], frame.index)
        for row in np.flatnonzero(ids == 0):
            ids[row] = next_id
            open_tracks.append(_Open(next_id, boxes[row], frame.index, np.zeros(4)))
            next_id += 1
        out.append(ids)
    return out


def _assign(
    tracks: Sequence[_Open], boxes: np.ndarray, index: int, cfg: LinkConfig
) -> list[tuple[int, int]]:
    if not tracks or not len(boxes):
        return []
    pred = np.stack([t.predicted(index) for t in tracks])
    # Not widened across gaps: frames with some vehicles unlabelled would let a track jump to
    # a neighbour (seen on km39 siang frames 226-230).
    reach = np.array([cfg.max_distance if t.seen > 1 else cfg.max_first_distance for t in tracks])
    cost = link_cost(pred, boxes, reach, cfg)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if cost[r, c] < _GATED]


def link_cost(
    pred: np.ndarray, boxes: np.ndarray, reach: np.ndarray, cfg: LinkConfig
) -> np.ndarray:
    """Cost ``(1 - IoU) + d`` of linking predicted track boxes (M, 4) to labelled boxes (N, 4).

    ``d`` is the centre distance over the predicted box's diagonal. A pair is allowed when the
    sizes agree within ``max_size_ratio`` and ``IoU >= min_iou`` or ``d <= reach`` (M,) of
    its track.
    """
    iou = iou_matrix(pred, boxes)
    pc = (pred[:, :2] + pred[:, 2:]) / 2
    bc = (boxes[:, :2] + boxes[:, 2:]) / 2
    diag = np.maximum(np.hypot(pred[:, 2] - pred[:, 0], pred[:, 3] - pred[:, 1]), 1e-6)
    dist = np.linalg.norm(pc[:, None] - bc[None], axis=2) / diag[:, None]
    pw = np.maximum(pred[:, 2:] - pred[:, :2], 1e-6)
    bw = np.maximum(boxes[:, 2:] - boxes[:, :2], 1e-6)
    ratio = np.abs(np.log(pw[:, None] / bw[None])).max(axis=2)
    allowed = ((iou >= cfg.min_iou) | (dist <= reach[:, None])) & (
        ratio <= math.log(cfg.max_size_ratio)
    )
    return np.where(allowed, 1.0 - iou + dist, _GATED)


def _extend(track: _Open, box: np.ndarray, index: int) -> None:
    step = (box - track.box) / (index - track.index)
    # Average with the previous velocity once there is one: label boxes jitter frame to frame.
    track.velocity = step if track.seen == 1 else (step + track.velocity) / 2
    track.box, track.index, track.seen = box, index, track.seen + 1


@dataclass(frozen=True)
class SequenceClock:
    """Capture time of the frames of an image sequence: ``start + index / fps``."""

    start: datetime
    fps: float

    def __post_init__(self) -> None:
        if self.start.utcoffset() is None:
            raise ValueError(f"SequenceClock.start: expected timezone-aware, got {self.start!r}")
        if not self.fps > 0:
            raise ValueError(f"SequenceClock.fps: expected > 0, got {self.fps}")

    def ts(self, index: int) -> datetime:
        return self.start + timedelta(seconds=index / self.fps)

    def index(self, ts: datetime) -> int:
        """The frame index at capture time ``ts`` (nearest)."""
        return round((ts - self.start).total_seconds() * self.fps)


@dataclass(frozen=True)
class GroundTruth:
    """Ground-truth tracks of one sequence and their line crossings.

    Attributes:
        frames: the observed frames.
        tracked: per observed frame, its labels as ``Detections`` in pixels with track ids.
        crossings: crossings of the camera's lines, counted by the real ``LineCounter``.
        anchors: where each track was on each frame, to place the crossings along the line.
    """

    frames: tuple[LabelledFrame, ...]
    tracked: tuple[Detections, ...]
    crossings: tuple[Crossing, ...]
    anchors: AnchorLog


def ground_truth(
    frames: Sequence[LabelledFrame],
    camera: CameraConfig,
    counter_cfg: CounterConfig,
    *,
    clock: SequenceClock,
    size: tuple[int, int],
    link: LinkConfig | None = None,
) -> GroundTruth:
    """Link the labels of one sequence into tracks and count their crossings.

    Args:
        frames: observed frames in index order (gaps left out).
        camera: the camera whose counting lines apply.
        counter_cfg: the same counting rules the pipeline uses.
        clock: capture time of each frame index.
        size: (width, height) of the images in pixels.
        link: linking rules.

    Returns:
        The tracked labels and their crossings, sorted by time.
    """
    ids = link_tracks(frames, link)
    counter = RecordingCounter(
        camera.id,
        camera.lines,
        counter_cfg,
        model_version="ground-truth",
        run_id="ground-truth",
        track_timeout_s=1e9,  # track ids are never reused: every track ends at the flush
    )
    blank = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (size[1], size[0], 3))
    scale = np.array([*size, *size], np.float32)
    tracked: list[Detections] = []
    for frame, tid in zip(frames, ids, strict=True):
        dets = Detections(
            frame.boxes * scale, np.ones(len(tid), np.float32), frame.classes, tid.copy()
        )
        counter.update(Frame(camera.id, clock.ts(frame.index), frame.index, blank), dets)
        tracked.append(dets)
    crossings = tuple(counter.flush())
    return GroundTruth(tuple(frames), tuple(tracked), crossings, counter.anchors)


class SequenceSpec(StrictModel):
    """One labelled image sequence of a counting benchmark and the recording it came from."""

    name: str = Field(..., min_length=1, description="file-name prefix: <name>-<index>")
    fps: float = Field(5.0, gt=0, le=240, description="frame rate of the recording")
    start: datetime = Field(EPOCH, description="capture time of frame index 0, with offset")
    first: int = Field(0, ge=0, description="first frame index evaluated")
    last: int | None = Field(None, ge=0, description="last frame index evaluated (None: all)")
    role: str = Field("evaluation", min_length=1, description="e.g. validation or training")
    light: str = Field("day", min_length=1, description="day or night, for grouping")

    @field_validator("start")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.utcoffset() is None:
            raise ValueError(f"start {v.isoformat()} needs a UTC offset, e.g. +07:00")
        return v

    @property
    def clock(self) -> SequenceClock:
        return SequenceClock(self.start, self.fps)

    def covers(self, index: int) -> bool:
        """Whether frame ``index`` is in the evaluated range."""
        return index >= self.first and (self.last is None or index <= self.last)


class BenchmarkSpec(StrictModel):
    """The sequences a counting evaluation runs on."""

    sequences: tuple[SequenceSpec, ...] = Field(..., min_length=1, description="sequences")

    @model_validator(mode="after")
    def _unique(self) -> BenchmarkSpec:
        names = [s.name for s in self.sequences]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"sequences listed twice: {dupes}")
        return self


def load_spec(path: Path) -> BenchmarkSpec:
    """Read a YAML file holding a ``sequences:`` list of ``SequenceSpec``."""
    try:
        return BenchmarkSpec.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        lines = str(exc).strip().splitlines()
        raise ConfigError(f"{path}: invalid sequence list ({'; '.join(lines[:3])})") from exc
    except PydanticValidationError as exc:
        raise ConfigError(
            f"{path}: invalid sequence list ({describe(exc)}); expected a `sequences:` list of "
            "name, fps, start, role, light and optionally first / last"
        ) from exc
