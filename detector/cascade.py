"""Cheap-first cascade: decide, frame by frame, whether the detector has to run.

Only vehicles near a counting line can make a count, so the cascade watches the region around the
camera's lines. A frame is analysed when that region changed since the last analysed frame (grey
frame difference) and, when a truck-presence classifier is given and the counter records trucks
only, when the classifier sees a truck in the region. Frames it clears are skipped entirely: the
tracker is not updated, so tracks simply see a longer gap.

It checks itself: every ``audit_every``-th frame it would skip is analysed anyway, and if the
detector finds a vehicle of a counted class in the region there, the cascade turns itself off for
the rest of the run (a warning says so) rather than risk a missed count.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from truckcount.config import CascadeConfig, LineConfig
from truckcount.detector.presence import PresenceClassifier, cells_touching
from truckcount.types import CLASSES, Detections, Frame, VehicleClass

log = logging.getLogger(__name__)
Region = tuple[float, float, float, float]
MOTION_WIDTH = 96  # the region is compared at this width: enough for vehicles, cheap to diff


def watched_region(lines: Sequence[LineConfig], margin: float) -> Region:
    """Box around all lines' end points grown by ``margin`` on each side, clipped to the frame."""
    xs = [p[0] for ln in lines for p in (ln.a, ln.b)]
    ys = [p[1] for ln in lines for p in (ln.a, ln.b)]
    return (
        max(min(xs) - margin, 0.0),
        max(min(ys) - margin, 0.0),
        min(max(xs) + margin, 1.0),
        min(max(ys) + margin, 1.0),
    )


@dataclass(frozen=True)
class CascadeStats:
    """What the cascade did over a run."""

    frames: int
    skipped: int
    audited: int
    disabled: bool

    @property
    def skip_rate(self) -> float:
        return self.skipped / self.frames if self.frames else 0.0


class Cascade:
    """Per-camera gate in front of the shared detector (state: the last analysed frame)."""

    def __init__(
        self,
        cfg: CascadeConfig,
        region: Region,
        classes: Sequence[VehicleClass],
        score: float,
        presence: PresenceClassifier | None = None,
    ) -> None:
        self.cfg, self.region, self.score = cfg, region, score
        self.class_ids = np.array([CLASSES.index(c) for c in classes])
        trucks_only = set(classes) == {VehicleClass.TRUCK}
        self.presence = presence if trucks_only else None
        self._cells = cells_touching(region, presence.cfg.grid) if presence else None
        self._reference: npt.NDArray[np.uint8] | None = None
        self._since_audit = 0
        self._audit_ids: set[int] = set()
        self.frames = self.skipped = self.audited = 0
        self.disabled = False

    def select(
        self, frames: Sequence[Frame], probs: npt.NDArray[np.float32] | None = None
    ) -> list[bool]:
        """Which frames of a batch go to the detector (True) and which are skipped.

        ``probs``: the frames' truck-presence probabilities when the caller already has them
        from this cascade's classifier (the presence feature shares it); else computed here.
        """
        self._audit_ids.clear()  # audits are checked within their own batch
        if self.disabled:
            self.frames += len(frames)
            return [True] * len(frames)
        truck_seen = self._trucks_seen(frames, probs)
        keep = []
        for frame, truck in zip(frames, truck_seen, strict=True):
            keep.append(self._decide(frame, truck))
        return keep

    def check(self, frame: Frame, dets: Detections) -> None:
        """After the detector ran on an audited frame: turn off if it found a counted vehicle."""
        if id(frame) not in self._audit_ids:
            return
        self._audit_ids.discard(id(frame))
        if self._vehicle_in_region(frame, dets):
            self.disabled = True
            log.warning(
                "camera %s: the cascade skipped a frame with a vehicle in the counting region "
                "(audit at %s); it is off for the rest of this run",
                frame.camera_id,
                frame.ts.isoformat(),
            )

    def stats(self) -> CascadeStats:
        return CascadeStats(self.frames, self.skipped, self.audited, self.disabled)

    def _decide(self, frame: Frame, truck: bool) -> bool:
        self.frames += 1
        grey = self._region_grey(frame)
        moved = self._reference is None or self._moved(grey)
        if moved and truck:
            self._reference = grey
            return True
        self._since_audit += 1
        if self._since_audit >= self.cfg.audit_every:
            self._since_audit = 0
            self.audited += 1
            self._audit_ids.add(id(frame))
            self._reference = grey
            return True
        self.skipped += 1
        return False

    def _moved(self, grey: npt.NDArray[np.uint8]) -> bool:
        assert self._reference is not None
        if self._reference.shape != grey.shape:
            return True
        diff = cv2.absdiff(grey, self._reference)
        return float((diff >= self.cfg.pixel_delta).mean()) >= self.cfg.motion_share

    def _region_grey(self, frame: Frame) -> npt.NDArray[np.uint8]:
        h, w = frame.image.shape[:2]
        x0, y0, x1, y1 = self.region
        crop = frame.image[int(y0 * h) : max(int(y1 * h), 1), int(x0 * w) : max(int(x1 * w), 1)]
        height = max(int(MOTION_WIDTH * crop.shape[0] / max(crop.shape[1], 1)), 1)
        small = cv2.resize(crop, (MOTION_WIDTH, height), interpolation=cv2.INTER_AREA)
        return np.asarray(cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), (3, 3), 0))

    def _trucks_seen(
        self, frames: Sequence[Frame], probs: npt.NDArray[np.float32] | None
    ) -> list[bool]:
        if self.presence is None or self._cells is None:
            return [True] * len(frames)
        if probs is None:
            probs = self.presence.probabilities([f.image for f in frames])
        return [bool(p[self._cells].max() >= self.cfg.presence_threshold) for p in probs]

    def _vehicle_in_region(self, frame: Frame, dets: Detections) -> bool:
        w, h = frame.size
        x0, y0, x1, y1 = self.region
        cx = (dets.xyxy[:, 0] + dets.xyxy[:, 2]) / 2 / w
        by = dets.xyxy[:, 3] / h
        inside = (cx >= x0) & (cx <= x1) & (by >= y0) & (by <= y1)
        counted = np.isin(dets.class_id, self.class_ids) & (dets.confidence >= self.score)
        return bool((inside & counted).any())
