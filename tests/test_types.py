"""Hand-off types reject malformed values at construction, with "expected ..., got ..."."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from tests.helpers import T0, make_detections
from truckcount.types import (
    Crossing,
    Detections,
    Direction,
    Frame,
    ValidationError,
    VehicleClass,
)


def _crossing(**over: object) -> Crossing:
    fields: dict[str, object] = dict(
        camera_id="cam",
        line_id="l",
        track_id=1,
        class_name="truck",
        direction="in",
        direction_name="toward",
        ts=T0,
        confidence=0.8,
        model_version="m",
        run_id="r",
    )
    fields.update(over)
    return Crossing(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((4, 4), np.uint8), r"expected an \(H, W, 3\) array, got \(4, 4\)"),
        (np.zeros((4, 4, 3), np.float32), "expected dtype uint8, got float32"),
        ("not an image", r"expected an \(H, W, 3\) array, got str"),
    ],
)
def test_frame_rejects_bad_images(image: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Frame("cam", T0, 0, image)  # type: ignore[arg-type]


def test_frame_rejects_naive_time() -> None:
    with pytest.raises(ValidationError, match="timezone-aware"):
        Frame("cam", datetime(2024, 1, 1), 0, np.zeros((2, 2, 3), np.uint8))


def test_frame_size_is_width_height() -> None:
    assert Frame("cam", T0, 0, np.zeros((360, 640, 3), np.uint8)).size == (640, 360)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(xyxy=np.zeros((2, 3))), r"xyxy: expected shape \(N, 4\), got \(2, 3\)"),
        (dict(confidence=np.zeros(3)), r"confidence: expected shape \(2,\), got \(3,\)"),
        (dict(class_id=np.zeros(1)), r"class_id: expected shape \(2,\), got \(1,\)"),
        (dict(tracker_id=np.zeros(5)), r"tracker_id: expected shape \(2,\), got \(5,\)"),
    ],
)
def test_detections_validate_shapes(kwargs: dict[str, object], message: str) -> None:
    base: dict[str, object] = dict(
        xyxy=np.zeros((2, 4)), confidence=np.zeros(2), class_id=np.zeros(2), tracker_id=None
    )
    base.update(kwargs)
    with pytest.raises(ValidationError, match=message):
        Detections(**base)  # type: ignore[arg-type]


def test_detections_mask_returns_new_object() -> None:
    dets = make_detections(
        [[0, 0, 10, 10], [5, 5, 20, 30]], tracker_id=[7, 8], confidence=[0.2, 0.9]
    )
    kept = dets[dets.confidence > 0.5]
    assert len(kept) == 1 and kept.tracker_id is not None and kept.tracker_id.tolist() == [8]
    assert len(dets) == 2
    assert kept.anchors().tolist() == [[12.5, 30.0]]


def test_detections_wrong_mask_length() -> None:
    with pytest.raises(ValidationError, match="mask"):
        make_detections([[0, 0, 1, 1]])[np.array([True, False])]


def test_empty_detections() -> None:
    empty = Detections.empty()
    assert len(empty) == 0 and empty.xyxy.shape == (0, 4)


def test_crossing_coerces_enums_and_validates() -> None:
    c = _crossing()
    assert c.class_name is VehicleClass.TRUCK and c.direction is Direction.IN
    with pytest.raises(ValueError, match="'lorry' is not a valid VehicleClass"):
        _crossing(class_name="lorry")
    with pytest.raises(ValidationError, match=r"confidence: expected in \[0, 1\], got 1.5"):
        _crossing(confidence=1.5)
    with pytest.raises(ValidationError, match="timezone-aware"):
        _crossing(ts=datetime(2024, 1, 1))
