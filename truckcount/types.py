"""Typed values handed from one pipeline stage to the next.

ingest -> ``Frame`` -> detector -> ``Detections`` -> tracker -> ``Detections`` (with ids)
-> line counter -> ``Crossing`` -> storage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import numpy as np
import numpy.typing as npt


class VehicleClass(StrEnum):
    """Classes the detector predicts; the index is the model's class id."""

    TRUCK = "truck"
    BUS = "bus"
    CAR = "car"

    @classmethod
    def from_id(cls, class_id: int) -> VehicleClass:
        """Map a model class id (0, 1, 2) to its class."""
        return CLASSES[class_id]

    @property
    def id(self) -> int:
        return CLASSES.index(self)


CLASSES: tuple[VehicleClass, ...] = (VehicleClass.TRUCK, VehicleClass.BUS, VehicleClass.CAR)


class Direction(StrEnum):
    """Way a track crosses a counting line from A to B.

    ``IN`` means the anchor point moved onto the right-hand side of the line A->B as drawn on the
    image (image y grows downward: for a horizontal line drawn left to right, ``IN`` is downward).
    Each line gives both ways a user name, e.g. ``in: toward_camera``.
    """

    IN = "in"
    OUT = "out"


class BucketWidth(StrEnum):
    """Length of a time bucket: a local clock hour, or a local day (23, 24 or 25 hours)."""

    HOURLY = "hourly"
    DAILY = "daily"


class ValidationError(ValueError):
    """A hand-off value was built with the wrong shape, type or content."""


def _require_utc(ts: datetime, what: str) -> None:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValidationError(f"{what}: expected a timezone-aware datetime, got naive {ts!r}")


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded image with its capture time.

    Attributes:
        camera_id: configured camera id.
        ts: timezone-aware capture time (start of the recording + presentation time).
        index: index of this frame among the *decoded* frames of its source.
        image: BGR uint8 array of shape (H, W, 3).
    """

    camera_id: str
    ts: datetime
    index: int
    image: npt.NDArray[np.uint8]

    def __post_init__(self) -> None:
        _require_utc(self.ts, "Frame.ts")
        img = self.image
        if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
            shape = getattr(img, "shape", type(img).__name__)
            raise ValidationError(f"Frame.image: expected an (H, W, 3) array, got {shape}")
        if img.dtype != np.uint8:
            raise ValidationError(f"Frame.image: expected dtype uint8, got {img.dtype}")
        if self.index < 0:
            raise ValidationError(f"Frame.index: expected >= 0, got {self.index}")

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.image.shape[1]), int(self.image.shape[0])


FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class Detections:
    """Boxes of one frame as a struct of arrays, in pixel coordinates of that frame.

    Attributes:
        xyxy: (N, 4) float32 boxes, x1 y1 x2 y2.
        confidence: (N,) float32 scores in [0, 1].
        class_id: (N,) int64 indices into ``CLASSES``.
        tracker_id: (N,) int64 track ids, or None before tracking.
    """

    xyxy: FloatArray
    confidence: FloatArray
    class_id: IntArray
    tracker_id: IntArray | None = None

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32)
        if xyxy.size == 0:
            xyxy = xyxy.reshape(0, 4)
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise ValidationError(f"Detections.xyxy: expected shape (N, 4), got {xyxy.shape}")
        n = xyxy.shape[0]
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(
            self, "confidence", _vector(self.confidence, n, np.float32, "confidence")
        )
        object.__setattr__(self, "class_id", _vector(self.class_id, n, np.int64, "class_id"))
        if self.tracker_id is not None:
            object.__setattr__(
                self, "tracker_id", _vector(self.tracker_id, n, np.int64, "tracker_id")
            )

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def __getitem__(self, index: npt.NDArray[np.bool_] | npt.NDArray[np.int64]) -> Detections:
        """Select rows with a boolean mask or an index array; returns a new object."""
        idx = np.asarray(index)
        if idx.dtype == np.bool_ and idx.shape != (len(self),):
            raise ValidationError(
                f"Detections mask: expected shape ({len(self)},), got {idx.shape}"
            )
        tid = None if self.tracker_id is None else self.tracker_id[idx]
        return Detections(self.xyxy[idx], self.confidence[idx], self.class_id[idx], tid)

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), None
        )

    def with_tracker_id(self, tracker_id: IntArray) -> Detections:
        """Return a copy carrying track ids."""
        return Detections(self.xyxy, self.confidence, self.class_id, tracker_id)

    def anchors(self) -> FloatArray:
        """Bottom-centre point of each box, shape (N, 2): where a vehicle touches the road."""
        x = (self.xyxy[:, 0] + self.xyxy[:, 2]) / 2
        return np.stack([x, self.xyxy[:, 3]], axis=1).astype(np.float32)


def _empty(a: object) -> bool:
    return np.asarray(a).size == 0


def _vector(values: object, n: int, dtype: type, name: str) -> npt.NDArray:
    arr = np.asarray(values, dtype=dtype).reshape(-1) if _empty(values) else np.asarray(values)
    if arr.shape != (n,):
        raise ValidationError(f"Detections.{name}: expected shape ({n},), got {arr.shape}")
    return arr.astype(dtype, copy=False)


@dataclass(frozen=True)
class Crossing:
    """One vehicle crossing one counting line: the unit every count is built from."""

    camera_id: str
    line_id: str
    track_id: int
    class_name: VehicleClass
    direction: Direction
    direction_name: str
    ts: datetime
    confidence: float
    model_version: str
    run_id: str

    def __post_init__(self) -> None:
        _require_utc(self.ts, "Crossing.ts")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValidationError(f"Crossing.confidence: expected in [0, 1], got {self.confidence}")
        object.__setattr__(self, "class_name", VehicleClass(self.class_name))
        object.__setattr__(self, "direction", Direction(self.direction))


@dataclass(frozen=True)
class RunInfo:
    """Identity and provenance of one processing run of one source."""

    run_id: str
    camera_id: str
    source: str
    model_version: str
    config_hash: str
    started_at: datetime
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DailyCount:
    """Trucks (or another class) counted on one local day in one direction of one line."""

    camera_id: str
    line_id: str
    day: str
    direction_name: str
    class_name: VehicleClass
    count: int


@dataclass(frozen=True)
class Bucket:
    """Crossings of one series (camera, line, class, direction) in one local hour or day.

    Attributes:
        start: aware UTC start of the bucket (a local hour or local midnight).
        end: aware UTC end; a daily bucket lasts 23 or 25 hours on DST change days.
        count: crossings in the bucket, or None when no video of the bucket was analysed.
        covered_s: seconds of the bucket covered by analysed video; below ``end - start`` the
            count is partial.
        truck_share: share of the frames the truck-presence classifier looked at in the bucket
            that hold a truck (the camera's, the same for all its series), or None where it
            looked at none.
    """

    camera_id: str
    line_id: str
    class_name: VehicleClass
    direction_name: str
    start: datetime
    end: datetime
    width: BucketWidth
    count: int | None
    covered_s: float
    truck_share: float | None = None

    def __post_init__(self) -> None:
        _require_utc(self.start, "Bucket.start")
        _require_utc(self.end, "Bucket.end")
        object.__setattr__(self, "class_name", VehicleClass(self.class_name))
        object.__setattr__(self, "width", BucketWidth(self.width))
        if self.count is None and self.covered_s > 0:
            raise ValidationError(f"Bucket.count: expected a number, covered {self.covered_s} s")


PRESENCE_SLOT_S = 900
"""Truck-presence tallies are kept per 15-minute slot of UTC time. Every time zone's offset is a
multiple of 15 minutes, so slots tile local hours and days exactly."""


@dataclass(frozen=True)
class PresenceSlot:
    """How many analysed frames of one camera in one 15-minute slot the presence classifier
    judged to hold a truck (the per-bucket "share of frames with a truck" feature).

    Attributes:
        start: aware UTC start of the slot, a multiple of ``PRESENCE_SLOT_S`` since the epoch.
        frames: frames the classifier looked at in the slot (>= 1).
        truck_frames: of those, frames with a truck (0 .. frames).
    """

    camera_id: str
    start: datetime
    frames: int
    truck_frames: int

    def __post_init__(self) -> None:
        _require_utc(self.start, "PresenceSlot.start")
        if int(self.start.timestamp()) % PRESENCE_SLOT_S or self.start.microsecond:
            raise ValidationError(f"PresenceSlot.start: {self.start} is not a slot boundary")
        if self.frames < 1 or not 0 <= self.truck_frames <= self.frames:
            raise ValidationError(
                f"PresenceSlot: expected 0 <= truck_frames <= frames >= 1, "
                f"got {self.truck_frames} of {self.frames}"
            )
