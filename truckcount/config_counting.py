"""Configuration of the tracker and of the line counter (sections ``tracker`` and ``counter``)."""

from __future__ import annotations

from pydantic import Field, model_validator

from truckcount.config_base import StrictModel
from truckcount.types import VehicleClass


class CounterConfig(StrictModel):
    """Rules that turn tracks into crossings."""

    min_track_frames: int = Field(3, ge=1, description="tracks seen on fewer frames never count")
    hysteresis: float = Field(
        0.01,
        ge=0.0,
        le=0.2,
        description="distance from the line (fraction of the frame diagonal) an anchor must reach "
        "on a side before that side is believed; stops jitter on the line from counting twice",
    )
    min_confidence: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="a track's crossing counts only if the mean score of its boxes of the voted "
        "class reaches this: weak, fragmentary tracks are left out",
    )
    classes: tuple[VehicleClass, ...] = Field(
        (VehicleClass.TRUCK, VehicleClass.BUS, VehicleClass.CAR),
        description="classes whose crossings are recorded",
    )
    track_crops: int = Field(
        4,
        ge=1,
        le=32,
        description="crops of a track's largest boxes kept for the crop classifier "
        "(detector.classifier), whose averaged probabilities decide a counted track's class",
    )
    class_override: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="the crop classifier's class replaces the detector's vote when its averaged "
        "probability reaches this; below it (an unsure classifier, e.g. on a viewpoint it was "
        "not trained on) the vote stands",
    )


class TrackerConfig(StrictModel):
    """Association of detections across frames."""

    high_threshold: float = Field(0.3, gt=0, lt=1, description="first-stage detection score")
    low_threshold: float = Field(0.1, gt=0, lt=1, description="second-stage detection score")
    new_track_threshold: float = Field(0.35, gt=0, lt=1, description="score to start a track")
    match_iou: float = Field(0.2, gt=0, lt=1, description="minimum IoU to associate a box")
    max_center_distance: float = Field(
        0.5,
        ge=0,
        le=2,
        description="also associate a box whose centre lies within this many diagonals of the "
        "track's predicted box, even below match_iou (fast vehicles at 5 fps); 0 disables",
    )
    max_size_change: float = Field(
        1.75,
        ge=0,
        description="a lost track (unseen on the last frame) only takes a box whose size (square "
        "root of its area) is within this factor of its own, so it cannot jump to a nearby "
        "vehicle of another size; 0 disables",
    )
    lost_seconds: float = Field(1.5, gt=0, description="keep a lost track this long (media time)")

    @model_validator(mode="after")
    def _ordered(self) -> TrackerConfig:
        if self.low_threshold > self.high_threshold:
            raise ValueError(
                f"low_threshold {self.low_threshold} must not exceed "
                f"high_threshold {self.high_threshold}"
            )
        if 0 < self.max_size_change < 1:
            raise ValueError(
                f"max_size_change {self.max_size_change} must be 0 (off) or a factor >= 1"
            )
        return self
