"""The cheap-first cascade skips the detector only where no count can be lost."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import box_at, make_detections, make_frame, presence_checkpoint
from truckcount.config import CascadeConfig, LineConfig
from truckcount.detector.cascade import Cascade, watched_region
from truckcount.detector.presence import (
    PresenceClassifier,
    cell_targets,
    cells_touching,
)
from truckcount.types import CLASSES, Frame, VehicleClass

LINE = LineConfig(id="y60", a=(0.0, 0.6), b=(1.0, 0.6))
REGION = watched_region([LINE], 0.2)  # x 0..1, y 0.4..0.8 -> pixels 144..288 of 360
ALL = (VehicleClass.TRUCK, VehicleClass.BUS, VehicleClass.CAR)


def frame_with_blob(t: float, y: int | None) -> Frame:
    """A grey frame with a white 60x40 blob whose top edge is at pixel row ``y`` (None: none)."""
    frame = make_frame(t)
    frame.image[:] = 80
    if y is not None:
        frame.image[y : y + 40, 300:360] = 255
    return frame


def cascade(audit_every: int = 1000, classes: tuple[VehicleClass, ...] = ALL) -> Cascade:
    cfg = CascadeConfig(enabled=True, audit_every=audit_every)
    return Cascade(cfg, REGION, classes, score=0.3)


def test_region_is_the_lines_box_grown_by_the_margin_and_clipped() -> None:
    assert watched_region([LINE], 0.2) == pytest.approx((0.0, 0.4, 1.0, 0.8))
    short = LineConfig(id="s", a=(0.3, 0.5), b=(0.5, 0.7))
    assert watched_region([short], 0.1) == pytest.approx((0.2, 0.4, 0.6, 0.8))


@pytest.mark.parametrize(
    ("blob_rows", "expected"),
    [
        pytest.param([None] * 5, [True, False, False, False, False], id="static-road"),
        pytest.param([200, 210, 220, 230], [True, True, True, True], id="moving-in-region"),
        pytest.param([10, 20, 30, 40], [True, False, False, False], id="moving-above-region"),
        pytest.param([200, 200, 200, 240], [True, False, False, True], id="stops-then-moves"),
    ],
)
def test_motion_in_the_region_decides(blob_rows: list[int | None], expected: list[bool]) -> None:
    gate = cascade()
    frames = [frame_with_blob(i * 0.2, y) for i, y in enumerate(blob_rows)]
    assert gate.select(frames) == expected
    assert gate.stats().skipped == expected.count(False)


def test_slow_drift_is_compared_with_the_last_analysed_frame_not_the_previous_one() -> None:
    """A vehicle creeping 2 px per frame never changes much from one frame to the next, but
    it does move away from where it was when the detector last looked."""
    gate = cascade()
    rows = [200 + 2 * i for i in range(30)]
    keep = gate.select([frame_with_blob(i * 0.2, y) for i, y in enumerate(rows)])
    assert keep[0] and any(keep[1:])


def test_an_audit_that_finds_a_vehicle_turns_the_cascade_off() -> None:
    gate = cascade(audit_every=3)
    frames = [frame_with_blob(i * 0.2, None) for i in range(4)]
    keep = gate.select(frames)
    assert keep == [True, False, False, True]  # frame 3 is the audit
    gate.check(frames[3], make_detections([box_at(320, 250)], confidence=0.8))
    assert gate.disabled
    assert gate.select([frame_with_blob(1.0, None)] * 3) == [True, True, True]


@pytest.mark.parametrize(
    ("box", "score", "cls", "disabled"),
    [
        pytest.param(box_at(320, 250), 0.8, VehicleClass.CAR, True, id="car-in-region"),
        pytest.param(box_at(320, 100), 0.8, VehicleClass.CAR, False, id="car-above-region"),
        pytest.param(box_at(320, 250), 0.2, VehicleClass.CAR, False, id="weak-box"),
    ],
)
def test_what_an_audit_counts_as_a_vehicle(
    box: list[float], score: float, cls: VehicleClass, disabled: bool
) -> None:
    gate = cascade(audit_every=1)
    frame = frame_with_blob(0.0, None)
    gate.select([frame])  # the first frame is always analysed, not audited
    frame2 = frame_with_blob(0.2, None)
    assert gate.select([frame2]) == [True]
    gate.check(frame2, make_detections([box], confidence=score, class_id=cls))
    assert gate.disabled is disabled


def test_presence_cells_follow_the_box_bottom_centre() -> None:
    from truckcount.detector.data import Sample

    truck, car = CLASSES.index(VehicleClass.TRUCK), CLASSES.index(VehicleClass.CAR)
    boxes = np.array([[0.1, 0.1, 0.3, 0.6], [0.6, 0.7, 0.9, 0.99]], np.float32)
    s = Sample(Path("x.jpg"), "seq", 0, boxes, np.array([truck, car]))
    grid = cell_targets(s, 4).reshape(4, 4)
    assert grid[2, 0] == 1 and grid.sum() == 1  # truck foot at (0.2, 0.6); the car is ignored
    assert cells_touching((0.0, 0.4, 1.0, 0.8), 4).reshape(4, 4)[1:4].all()
    assert not cells_touching((0.0, 0.4, 1.0, 0.8), 4).reshape(4, 4)[0].any()


@pytest.mark.parametrize(
    ("bias", "classes", "expected"),
    [
        pytest.param(-10.0, (VehicleClass.TRUCK,), [False, False], id="no-truck-trucks-only"),
        pytest.param(10.0, (VehicleClass.TRUCK,), [True, True], id="truck-trucks-only"),
        pytest.param(-10.0, ALL, [True, True], id="no-truck-but-cars-counted"),
    ],
)
def test_presence_skips_moving_frames_only_when_only_trucks_are_counted(
    tmp_path: Path, bias: float, classes: tuple[VehicleClass, ...], expected: list[bool]
) -> None:
    presence = PresenceClassifier(presence_checkpoint(tmp_path, bias), torch.device("cpu"))
    gate = Cascade(CascadeConfig(enabled=True, audit_every=1000), REGION, classes, 0.3, presence)
    frames = [frame_with_blob(0.0, 200), frame_with_blob(0.2, 230)]
    gate._reference = gate._region_grey(frame_with_blob(-0.2, 170))  # motion on both frames
    assert gate.select(frames) == expected
