"""Ground truth from labels: boxes of consecutive frames linked into tracks, and their crossings.

Label frames are 640x640 (normalised boxes x 640). The counting line "y60" runs across the frame
at y = 0.6 (384 px), drawn left to right, so IN ("toward_camera") is downward; the hysteresis
band is 0.01 x 905 px = 9 px either side. Missing indices are gaps, not empty roads.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.test_count_eval import BUS, CAR, START, TRUCK, Y60
from truckcount.aggregator.groundtruth import (
    LabelledFrame,
    SequenceClock,
    ground_truth,
    link_tracks,
)
from truckcount.config import CameraConfig, CounterConfig
from truckcount.ingest.images import ImageSequence, open_image_sequence
from truckcount.types import VehicleClass

CAMERA = CameraConfig(id="km39", lines=(Y60,))
CLOCK = SequenceClock(START, 5.0)
SIZE = 640

# One label: (anchor x, anchor y) in pixels of a 60 x 40 box, and its class.
Label = tuple[float, float, VehicleClass]


def labelled(index: int, labels: Sequence[Label], w: float = 60, h: float = 40) -> LabelledFrame:
    boxes = [[x - w / 2, y - h, x + w / 2, y] for x, y, _ in labels]
    return LabelledFrame(
        index,
        np.asarray(boxes, np.float32).reshape(-1, 4) / SIZE,
        np.asarray([c.id for _, _, c in labels], np.int64),
    )


def table(rows: Sequence[tuple[int, Sequence[Label]]]) -> list[LabelledFrame]:
    return [labelled(index, labels) for index, labels in rows]


def gt_summary(frames: Sequence[LabelledFrame]) -> list[tuple[str, str, int]]:
    """(class, direction name, deciding frame) of each ground-truth crossing."""
    gt = ground_truth(frames, CAMERA, CounterConfig(), clock=CLOCK, size=(SIZE, SIZE))
    return [(c.class_name.value, c.direction_name, CLOCK.index(c.ts)) for c in gt.crossings]


def down(x: float, y0: float, step: float, n: int, cls: VehicleClass = TRUCK) -> list[Label]:
    return [(x, y0 + k * step, cls) for k in range(n)]


# A truck driving down the right carriageway (toward the camera) at 30 px/frame, y 330 -> 450,
# and a car driving up the left one (away) at 25 px/frame, y 450 -> 350.
TRUCK_DOWN = down(450, 330, 30, 5)
CAR_UP = down(150, 450, -25, 5, CAR)
SLOW = down(450, 300, 10, 6)


@pytest.mark.parametrize(
    ("rows", "expected_ids"),
    [
        pytest.param(
            [(k, [TRUCK_DOWN[k], CAR_UP[k]]) for k in range(5)],
            [[1, 2]] * 5,
            id="two vehicles, opposite ways",
        ),
        pytest.param(
            [
                (k, [CAR_UP[k], TRUCK_DOWN[k]]) if k % 2 else (k, [TRUCK_DOWN[k], CAR_UP[k]])
                for k in range(5)
            ],
            [[1, 2], [2, 1], [1, 2], [2, 1], [1, 2]],
            id="label order changes",
        ),
        pytest.param(
            [(k, [SLOW[k]]) for k in (0, 3, 4)],
            [[1], [1], [1]],
            id="two missing frames bridged",
        ),
        pytest.param(
            [(k, [SLOW[k]]) for k in (0, 1, 5)],
            [[1], [1], [2]],
            id="three missing frames end the track",
        ),
        pytest.param(
            [(k, [(450, 300 + 55 * k, TRUCK if k % 2 else BUS)]) for k in range(4)],
            [[1]] * 4,
            id="fast (more than a box height per frame), class flickers",
        ),
        pytest.param(
            [(0, [(450, 330, TRUCK)]), (1, [(450, 360, TRUCK), (450, 150, CAR)])],
            [[1], [1, 2]],
            id="a vehicle appears far away",
        ),
    ],
)
def test_link_tracks(rows: list[tuple[int, list[Label]]], expected_ids: list[list[int]]) -> None:
    got = link_tracks(table(rows))
    assert [ids.tolist() for ids in got] == expected_ids


def test_link_tracks_rejects_a_size_jump() -> None:
    frames = [labelled(0, [(450, 330, TRUCK)]), labelled(1, [(450, 340, TRUCK)], w=200, h=150)]
    assert [ids.tolist() for ids in link_tracks(frames)] == [[1], [2]]


def test_link_tracks_needs_increasing_indices() -> None:
    with pytest.raises(ValueError, match="increasing"):
        link_tracks(table([(3, []), (2, [])]))


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        pytest.param(
            [(k, [TRUCK_DOWN[k], CAR_UP[k]]) for k in range(5)],
            [("truck", "toward_camera", 3), ("car", "away_from_camera", 4)],
            id="one each way",
        ),
        pytest.param(
            [(k, [(450, 330 + 30 * k, CAR if k == 0 else TRUCK)]) for k in range(5)],
            [("truck", "toward_camera", 3)],
            id="class is the vote over the track",
        ),
        pytest.param(
            [(0, [TRUCK_DOWN[0]]), (1, [TRUCK_DOWN[1]]), (4, [TRUCK_DOWN[4]])],
            [("truck", "toward_camera", 4)],
            id="crossing inside a short gap is decided on the next labelled frame",
        ),
        pytest.param(
            [
                (0, [(450, 330, TRUCK)]),
                (1, [(450, 350, TRUCK)]),
                (2, [(450, 370, TRUCK)]),
                (6, [(450, 450, TRUCK)]),
                (7, [(450, 470, TRUCK)]),
                (8, [(450, 490, TRUCK)]),
            ],
            [],
            id="crossing inside a long gap is not counted",
        ),
        pytest.param(
            [(0, [(450, 360, TRUCK)]), (1, [(450, 395, TRUCK)])],
            [],
            id="track too short to count",
        ),
    ],
)
def test_ground_truth_crossings(
    rows: list[tuple[int, list[Label]]], expected: list[tuple[str, str, int]]
) -> None:
    assert gt_summary(table(rows)) == expected


def test_image_sequence_gaps_and_clock(tmp_path: Path) -> None:
    for index in (0, 1, 4):
        cv2.imwrite(str(tmp_path / f"cam-{index:05d}.jpg"), np.zeros((8, 12, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "other-00002.jpg"), np.zeros((8, 12, 3), np.uint8))
    seq = ImageSequence.scan(tmp_path, "cam")
    assert seq.gaps == [2, 3]
    frames = list(open_image_sequence(seq, camera_id="c", start=START, fps=4.0, first=1))
    assert [f.index for f in frames] == [1, 4]
    assert [f.ts - START for f in frames] == [timedelta(seconds=0.25), timedelta(seconds=1.0)]
    assert frames[0].size == (12, 8)
