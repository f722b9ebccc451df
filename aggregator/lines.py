"""Turn tracked boxes into line crossings.

A box's anchor is its bottom-centre, where the vehicle touches the road. For each track and line
the counter remembers which side of the line the anchor was last *believed* to be on: a side is
believed only once the anchor is at least ``hysteresis`` x the frame diagonal away from the line,
so a box jittering on the line never flips sides. When the believed side flips and the path from
the last believed point to the new one meets the segment A->B itself (not its extension), the
track has crossed, decided on that frame.

Rules chosen:

* A track counts at most once per line: its *first* decisive crossing. Later crossings of the
  same line by the same track (a vehicle backing up, or a tracker glitch) are ignored.
* A track first seen on the line (within the hysteresis band) has no believed side yet, so it only
  counts if it later leaves one side decisively and reaches the other.
* An ID switch splits one vehicle into two tracks. Each track counts on its own, so a switch away
  from the line still gives exactly one count (from the track that held the crossing), but a
  switch inside the hysteresis band gives none: neither track saw both sides.
* A line with an ``origin_zone`` (a polygon) counts only tracks *born* in it: the anchor of the
  track's first observed box must lie inside the polygon (its edge counts as inside). This keeps
  e.g. only trucks leaving a yard. The counter keeps just that first anchor per track; a track
  born elsewhere still has its sides followed but its crossings of that line are dropped. An ID
  switch makes a new track born where the switch happened, so it may lose a zone's vehicle.
* The class is the majority vote over every frame of the track (ties: larger summed confidence,
  then the lower class id); the confidence is the mean score of the winning class's boxes, and a
  track below ``min_confidence`` is not counted. With a crop classifier (``classifier=``), the
  counter also keeps crops of each track's ``track_crops`` largest boxes, cut from the full
  frame; when the classifier's averaged probability over those crops reaches ``class_override``
  for some class, that class and probability replace the vote's (below it the vote stands). The
  detector's vote still decides whether the track is a vehicle worth counting
  (``min_confidence``).

Because the vote needs the whole track, crossings are emitted when the track ends (unseen for
``track_timeout_s`` of media time) or at ``flush()``. Each call returns its crossings sorted by
``ts``; a crossing of a long-lived track can therefore be returned after a later crossing of a
short one. Per-track state (at most ``track_crops`` small crops) is deleted when the track ends.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt

from truckcount.config import CounterConfig, LineConfig
from truckcount.types import CLASSES, Crossing, Detections, Direction, Frame, VehicleClass

log = logging.getLogger(__name__)

Point = npt.NDArray[np.float64]
Image = npt.NDArray[np.uint8]


class CropJudge(Protocol):
    """What the counter needs of a crop classifier (``detector/crop_classifier.py``)."""

    def crop(self, image: Image, xyxy: npt.ArrayLike) -> Image:
        """The crop to classify for one box of a full frame."""
        ...

    def probabilities(self, crops: list[Image]) -> npt.NDArray[np.float32]:
        """(N, classes) probabilities, columns in ``CLASSES`` order."""
        ...


@dataclass(frozen=True)
class _PixelLine:
    """A counting line in the pixel coordinates of one frame size."""

    a: Point
    b: Point

    @classmethod
    def of(cls, line: LineConfig, size: tuple[int, int]) -> _PixelLine:
        scale = np.array(size, dtype=np.float64)
        return cls(np.array(line.a) * scale, np.array(line.b) * scale)

    def signed_distance(self, p: Point) -> float:
        """Distance of ``p`` from the infinite line; positive on the right-hand side of A->B.

        Image y grows downward, so for a line drawn left to right "right-hand" is below it.
        """
        d = self.b - self.a
        cross = d[0] * (p[1] - self.a[1]) - d[1] * (p[0] - self.a[0])
        return float(cross / math.hypot(d[0], d[1]))

    def meets_segment(self, p0: Point, p1: Point) -> bool:
        """Whether the path ``p0 -> p1``, which changes side, meets A->B between A and B."""
        d0, d1 = self.signed_distance(p0), self.signed_distance(p1)
        q = p0 + (d0 / (d0 - d1)) * (p1 - p0)
        ab = self.b - self.a
        u = float(np.dot(q - self.a, ab) / np.dot(ab, ab))
        return 0.0 <= u <= 1.0


def _pixel_zone(
    zone: tuple[tuple[float, float], ...], size: tuple[int, int]
) -> npt.NDArray[np.float32]:
    """A normalised polygon as an OpenCV contour (N x 1 x 2 float32) in pixels of ``size``."""
    scaled = np.array(zone, dtype=np.float64) * np.array(size, dtype=np.float64)
    return scaled.astype(np.float32).reshape(-1, 1, 2)  # scaled in float64: edges stay exact


@dataclass
class _Side:
    """Where one track was last believed to be relative to one line."""

    side: int = 0  # -1 left of A->B, +1 right, 0 never believed yet
    point: Point | None = None  # last anchor believed on ``side``, pixels


@dataclass(frozen=True)
class _Decision:
    """A track's first decisive crossing of one line."""

    line_index: int
    direction: Direction
    ts: datetime


@dataclass
class _TrackState:
    """Everything the counter keeps about one live track: O(lines + classes), not O(frames)."""

    last_ts: datetime
    sides: list[_Side]
    origin: Point  # anchor of the first observed box, pixels (for origin zones)
    frames: int = 0
    votes: Counter[int] = field(default_factory=Counter)
    conf_sums: defaultdict[int, float] = field(default_factory=lambda: defaultdict(float))
    decisions: dict[int, _Decision] = field(default_factory=dict)
    crops: list[tuple[float, int, Image]] = field(default_factory=list)  # min-heap by box area


class LineCounter:
    """Count tracks crossing the counting lines of one camera.

    Args:
        camera_id: camera whose frames this counter receives.
        lines: counting lines in normalised coordinates; ids must be unique.
        cfg: hysteresis, minimum track length and recorded classes.
        model_version: stamped on every crossing.
        run_id: stamped on every crossing.
        track_timeout_s: a track unseen for longer than this (media time) has ended; use at
            least the tracker's ``lost_seconds`` so a track is not ended while it may come back.
        classifier: optional crop classifier that decides the class of counted tracks.
    """

    def __init__(
        self,
        camera_id: str,
        lines: Sequence[LineConfig],
        cfg: CounterConfig,
        *,
        model_version: str,
        run_id: str,
        track_timeout_s: float,
        classifier: CropJudge | None = None,
    ) -> None:
        ids = [ln.id for ln in lines]
        if not ids:
            raise ValueError(f"camera {camera_id!r}: expected at least one counting line, got 0")
        if len(set(ids)) != len(ids):
            raise ValueError(f"camera {camera_id!r}: expected unique line ids, got {ids}")
        if not track_timeout_s > 0:
            raise ValueError(f"track_timeout_s: expected > 0, got {track_timeout_s}")
        self.camera_id = camera_id
        self.lines = tuple(lines)
        self.cfg = cfg
        self.model_version = model_version
        self.run_id = run_id
        self.track_timeout_s = track_timeout_s
        self.classifier = classifier
        self._tracks: dict[int, _TrackState] = {}
        self._size: tuple[int, int] | None = None
        self._pixel_lines: list[_PixelLine] = []
        self._pixel_zones: list[npt.NDArray[np.float32] | None] = []
        self._hysteresis_px = 0.0

    def __len__(self) -> int:
        """Number of tracks whose state is held in memory."""
        return len(self._tracks)

    def update(self, frame: Frame, dets: Detections) -> list[Crossing]:
        """Observe one frame's tracked boxes and return the crossings of tracks that ended.

        Args:
            frame: the frame the boxes were detected on (its size and ``ts`` are used).
            dets: tracked boxes; rows without a track id are ignored.

        Returns:
            Crossings of tracks that ended by ``frame.ts``, sorted by ``ts``.
        """
        if frame.camera_id != self.camera_id:
            raise ValueError(
                f"LineCounter for camera {self.camera_id!r} got a frame of {frame.camera_id!r}"
            )
        if dets.tracker_id is not None and len(dets):
            self._set_size(frame.size)
            anchors = dets.anchors().astype(np.float64)
            track_ids, rows = np.unique(dets.tracker_id, return_index=True)
            for track_id, row in zip(track_ids, rows, strict=True):
                self._observe(int(track_id), frame.ts, anchors[row], dets, int(row))
                if self.classifier is not None:
                    self._keep_crop(self._tracks[int(track_id)], frame.image, dets.xyxy[row])
        timeout = self.track_timeout_s
        return self._finish(lambda st: (frame.ts - st.last_ts).total_seconds() > timeout)

    def flush(self) -> list[Crossing]:
        """End every track (end of stream) and return their crossings sorted by ``ts``."""
        return self._finish(lambda st: True)

    def _set_size(self, size: tuple[int, int]) -> None:
        if size != self._size:
            self._size = size
            self._pixel_lines = [_PixelLine.of(ln, size) for ln in self.lines]
            self._pixel_zones = [
                None if ln.origin_zone is None else _pixel_zone(ln.origin_zone, size)
                for ln in self.lines
            ]
            self._hysteresis_px = self.cfg.hysteresis * math.hypot(*size)

    def _observe(
        self, track_id: int, ts: datetime, anchor: Point, dets: Detections, row: int
    ) -> None:
        state = self._tracks.get(track_id)
        if state is None:
            state = _TrackState(
                last_ts=ts, sides=[_Side() for _ in self.lines], origin=anchor.copy()
            )
            self._tracks[track_id] = state
        state.last_ts = ts
        state.frames += 1
        class_id = int(dets.class_id[row])
        state.votes[class_id] += 1
        state.conf_sums[class_id] += float(dets.confidence[row])
        for i, (line, side) in enumerate(zip(self._pixel_lines, state.sides, strict=True)):
            direction = self._step(line, side, anchor)
            if direction is None:
                continue
            if i in state.decisions:
                log.debug("track %d re-crossed line %s; first crossing kept", track_id, i)
                continue
            if not self._born_in_zone(i, state.origin):
                log.debug("track %d crossed line %s but was born outside its zone", track_id, i)
                continue
            state.decisions[i] = _Decision(i, direction, ts)

    def _keep_crop(self, state: _TrackState, image: Image, xyxy: npt.ArrayLike) -> None:
        """Keep this box's crop if it is among the track's ``track_crops`` largest so far."""
        assert self.classifier is not None
        x1, y1, x2, y2 = np.asarray(xyxy, np.float64)
        area = float((x2 - x1) * (y2 - y1))
        if len(state.crops) >= self.cfg.track_crops and area <= state.crops[0][0]:
            return
        item = (area, state.frames, self.classifier.crop(image, xyxy))
        if len(state.crops) < self.cfg.track_crops:
            heapq.heappush(state.crops, item)
        else:
            heapq.heapreplace(state.crops, item)

    def _born_in_zone(self, line_index: int, origin: Point) -> bool:
        """Whether ``origin`` lies inside the line's origin zone (or on its edge); True if none."""
        zone = self._pixel_zones[line_index]
        if zone is None:
            return True
        point = (float(origin[0]), float(origin[1]))
        return cv2.pointPolygonTest(zone, point, False) >= 0

    def _step(self, line: _PixelLine, side: _Side, anchor: Point) -> Direction | None:
        """Update the believed side; return the direction if the anchor just crossed."""
        dist = line.signed_distance(anchor)
        if dist == 0 or abs(dist) < self._hysteresis_px:
            return None  # on the line: keep believing the previous side
        new = 1 if dist > 0 else -1
        previous, start = side.side, side.point
        side.side, side.point = new, anchor
        if previous in (0, new) or start is None:
            return None
        if not line.meets_segment(start, anchor):
            return None  # passed beside the segment, not across it
        return Direction.IN if new > 0 else Direction.OUT

    def _finish(self, ended: Callable[[_TrackState], bool]) -> list[Crossing]:
        """Emit the crossings of ended tracks and delete their state.

        The crops of all tracks ending together go through the classifier in one batch."""
        done = [track_id for track_id, state in self._tracks.items() if ended(state)]
        voted = []
        for track_id in done:
            state = self._tracks.pop(track_id)
            vote = self._vote(track_id, state)
            if vote is not None:
                voted.append((track_id, state, *vote))
        judged = self._judge([state for _, state, *_ in voted])
        out: list[Crossing] = []
        for (track_id, state, vehicle, confidence), probs in zip(voted, judged, strict=True):
            if probs is not None and float(probs.max()) >= self.cfg.class_override:
                vehicle = VehicleClass.from_id(int(probs.argmax()))
                confidence = min(max(float(probs.max()), 0.0), 1.0)
            if vehicle in self.cfg.classes:
                out += [
                    self._crossing(track_id, d, vehicle, confidence)
                    for d in state.decisions.values()
                ]
        out.sort(key=lambda c: (c.ts, c.line_id, c.track_id))
        return out

    def _vote(self, track_id: int, state: _TrackState) -> tuple[VehicleClass, float] | None:
        """The detector's class vote over a counted track and its mean confidence; None when
        the track does not count (too short, no crossing, or too unsure)."""
        if state.frames < self.cfg.min_track_frames or not state.decisions:
            return None
        class_id = max(state.votes, key=lambda c: (state.votes[c], state.conf_sums[c], -c))
        if not 0 <= class_id < len(CLASSES):
            log.warning("track %d: unknown class id %d, not counted", track_id, class_id)
            return None
        confidence = min(max(state.conf_sums[class_id] / state.votes[class_id], 0.0), 1.0)
        if confidence < self.cfg.min_confidence:
            return None
        return VehicleClass.from_id(class_id), confidence

    def _judge(self, states: list[_TrackState]) -> list[npt.NDArray[np.float32] | None]:
        """The classifier's mean class probabilities per track (None: no classifier or crops)."""
        if self.classifier is None or not any(s.crops for s in states):
            return [None] * len(states)
        probs = self.classifier.probabilities([c for s in states for *_, c in s.crops])
        out: list[npt.NDArray[np.float32] | None] = []
        start = 0
        for s in states:
            n = len(s.crops)
            out.append(probs[start : start + n].mean(axis=0) if n else None)
            start += n
        return out

    def _crossing(
        self, track_id: int, decision: _Decision, vehicle: VehicleClass, confidence: float
    ) -> Crossing:
        line = self.lines[decision.line_index]
        names = line.directions
        return Crossing(
            camera_id=self.camera_id,
            line_id=line.id,
            track_id=track_id,
            class_name=vehicle,
            direction=decision.direction,
            direction_name=names.in_ if decision.direction is Direction.IN else names.out,
            ts=decision.ts,
            confidence=confidence,
            model_version=self.model_version,
            run_id=self.run_id,
        )
