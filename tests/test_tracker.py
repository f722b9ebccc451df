"""Tracker specifications as per-frame tables.

Expected ids are written as labels ("a", "b"); a label must map to one track id for the whole
table and different labels to different ids. "-" means the box is not returned (a new track is
returned from its second frame on, once confirmed).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from tests.helpers import box_centred, make_detections
from truckcount.aggregator.tracker import Tracker, association_cost, iou_matrix, sizes_agree
from truckcount.config import TrackerConfig
from truckcount.types import VehicleClass

Box = list[float]
Row = tuple[float, Sequence[Box], Sequence[float], Sequence[str]]  # t, boxes, scores, labels

# The thresholds these tables are written for (pinned, so tuning the shipped defaults cannot
# silently change what the tables test).
CFG = TrackerConfig(high_threshold=0.5, low_threshold=0.15, new_track_threshold=0.55)


def _key(box: Sequence[float]) -> tuple[float, ...]:
    return tuple(round(float(v), 2) for v in box)


def run_table(rows: Sequence[Row], cfg: TrackerConfig | None = None) -> Tracker:
    """Feed each row to a tracker and check the returned ids against the labels."""
    tracker = Tracker(cfg or CFG)
    label_ids: dict[str, int] = {}
    for t, boxes, scores, labels in rows:
        out = tracker.update(make_detections(xyxy=boxes, confidence=scores), t)
        assert out.tracker_id is not None
        got = {_key(b): int(i) for b, i in zip(out.xyxy, out.tracker_id, strict=True)}
        for box, label in zip(boxes, labels, strict=True):
            track_id = got.pop(_key(box), None)
            if label == "-":
                assert track_id is None, f"t={t}: box {box} should not be returned"
                continue
            assert track_id is not None, f"t={t}: box {box} lost its track ({label})"
            assert label_ids.setdefault(label, track_id) == track_id, f"t={t}: id of {label}"
        assert not got, f"t={t}: unexpected boxes {got}"
    assert len(set(label_ids.values())) == len(label_ids), f"labels share ids: {label_ids}"
    return tracker


def moving(t: float, cx: float, cy: float = 100.0) -> list[float]:
    return box_centred(cx, cy, 60, 40)


SINGLE_BOX_10FPS: list[Row] = [
    # t    boxes              scores  labels
    (0.0, [moving(0.0, 100)], [0.9], ["-"]),
    (0.1, [moving(0.1, 112)], [0.9], ["a"]),
    (0.2, [moving(0.2, 124)], [0.9], ["a"]),
    # 0.3: frame not sampled at all (no update call)
    (0.4, [moving(0.4, 148)], [0.9], ["a"]),
    (0.5, [], [], []),  # detector missed it
    (0.6, [moving(0.6, 172)], [0.9], ["a"]),
    (0.7, [moving(0.7, 184)], [0.9], ["a"]),
]

SINGLE_BOX_5FPS: list[Row] = [
    (0.0, [moving(0.0, 100)], [0.9], ["-"]),
    (0.2, [moving(0.2, 124)], [0.9], ["a"]),
    (0.4, [moving(0.4, 148)], [0.9], ["a"]),
    (0.8, [moving(0.8, 196)], [0.9], ["a"]),  # 0.6 missing
    (1.0, [], [], []),
    (1.2, [moving(1.2, 244)], [0.9], ["a"]),
]


@pytest.mark.parametrize("rows", [SINGLE_BOX_10FPS, SINGLE_BOX_5FPS], ids=["10fps", "5fps"])
def test_moving_box_keeps_its_id_across_missed_frames(rows: list[Row]) -> None:
    run_table(rows)


def lanes(k: int) -> list[Box]:
    """Two vehicles in adjacent, overlapping lanes driving towards each other."""
    return [box_centred(100 + 30 * k, 130, 60, 60), box_centred(400 - 30 * k, 150, 60, 60)]


CROSSING: list[Row] = [
    (k * 0.1, lanes(k), [0.9, 0.9], ["-", "-"] if k == 0 else ["a", "b"]) for k in range(11)
]


def test_two_boxes_passing_each_other_keep_their_ids() -> None:
    tracker = run_table(CROSSING)
    assert len(tracker.active_ids()) == 2


LOW_SCORE_CONTINUES: list[Row] = [
    (0.0, [moving(0.0, 100)], [0.9], ["-"]),
    (0.1, [moving(0.1, 110)], [0.9], ["a"]),
    (0.2, [moving(0.2, 120)], [0.3], ["a"]),  # low score: second stage keeps the track
    (0.3, [moving(0.3, 130)], [0.2], ["a"]),
    (0.4, [moving(0.4, 140)], [0.1], ["-"]),  # below low_threshold: ignored, track coasts
    (0.5, [moving(0.5, 150)], [0.9], ["a"]),
]

LOW_SCORE_NEVER_STARTS: list[Row] = [
    (0.0, [moving(0.0, 100)], [0.3], ["-"]),
    (0.1, [moving(0.1, 110)], [0.3], ["-"]),
    (0.2, [moving(0.2, 120)], [0.52], ["-"]),  # high, but below new_track_threshold 0.55
    (0.3, [moving(0.3, 130)], [0.52], ["-"]),
    (0.4, [moving(0.4, 140)], [0.3], ["-"]),
]


@pytest.mark.parametrize(
    "rows, tracks_left",
    [(LOW_SCORE_CONTINUES, 1), (LOW_SCORE_NEVER_STARTS, 0)],
    ids=["continues", "never-starts"],
)
def test_low_score_boxes_continue_tracks_but_never_start_them(
    rows: list[Row], tracks_left: int
) -> None:
    tracker = run_table(rows)
    assert len(tracker) == tracks_left


def fast_path(
    w: float, h: float, vx: float, vy: float, growth: float, skip: Sequence[int] = ()
) -> list[Row]:
    """A box at 5 fps moving (vx, vy) of its own height per frame, scaling by ``growth``."""
    rows: list[Row] = []
    cx, cy = 200.0, 100.0
    for k in range(10):
        if k not in skip:
            rows.append((k * 0.2, [box_centred(cx, cy, w, h)], [0.9], ["-" if k == 0 else "a"]))
        cx, cy, w, h = cx + vx * h, cy + vy * h, w * growth, h * growth
    return rows


@pytest.mark.parametrize(
    "rows",
    [
        fast_path(w=120, h=60, vx=0.0, vy=0.4, growth=1.0),
        fast_path(w=30, h=60, vx=0.4, vy=0.0, growth=1.0),  # tall box sideways: IoU 0.11
        fast_path(w=40, h=60, vx=0.3, vy=0.3, growth=1.0),
        fast_path(w=60, h=40, vx=0.0, vy=0.4, growth=1.08),  # approaching the camera
        fast_path(w=30, h=60, vx=0.4, vy=0.0, growth=1.0, skip=[4]),
        fast_path(w=60, h=40, vx=0.0, vy=0.4, growth=1.08, skip=[5, 6]),
    ],
    ids=["down", "sideways-tall", "diagonal", "approaching", "sideways-gap", "approaching-gap"],
)
def test_fast_truck_at_5fps_keeps_its_id(rows: list[Row]) -> None:
    run_table(rows)


def test_iou_gate_alone_loses_a_fast_tall_box() -> None:
    """Why ``max_center_distance`` exists: with IoU gating only, the track breaks."""
    tracker = Tracker(CFG.model_copy(update={"max_center_distance": 0.0}))
    ids: set[int] = set()
    for t, boxes, scores, _ in fast_path(w=30, h=60, vx=0.4, vy=0.0, growth=1.0):
        out = tracker.update(make_detections(xyxy=boxes, confidence=scores), t)
        ids.update(int(i) for i in (out.tracker_id if out.tracker_id is not None else []))
    assert len(ids) != 1


@pytest.mark.parametrize("fps", [5, 10])
@pytest.mark.parametrize(
    "t, active",
    [
        (0.6, True),
        (1.8, True),  # last seen at 0.4 s, lost_seconds 1.5: kept until 1.9 s
        (2.0, False),
        (3.0, False),
    ],
)
def test_lost_track_is_removed_after_lost_seconds(fps: int, t: float, active: bool) -> None:
    tracker = Tracker(CFG.model_copy(update={"lost_seconds": 1.5}))
    for k in range(int(0.4 * fps) + 1):
        tracker.update(make_detections(xyxy=[moving(0, 100 + 10 * k)]), k / fps)
    (track_id,) = tracker.active_ids()
    k = int(0.4 * fps) + 1
    while k / fps < t - 1e-9:
        tracker.update(make_detections(), k / fps)
        k += 1
    tracker.update(make_detections(), t)
    assert (track_id in tracker.active_ids()) is active
    assert len(tracker) == (1 if active else 0)  # state freed, not just hidden


REAPPEARS: list[Row] = [
    (0.0, [moving(0.0, 100)], [0.9], ["-"]),
    (0.2, [moving(0.2, 110)], [0.9], ["a"]),
    (0.4, [moving(0.4, 120)], [0.9], ["a"]),
    (0.6, [], [], []),  # occluded for 0.8 s, within lost_seconds
    (0.8, [], [], []),
    (1.0, [], [], []),
    (1.2, [moving(1.2, 160)], [0.9], ["a"]),
    (3.0, [], [], []),  # gone for good: removed
    (3.2, [moving(3.2, 160)], [0.9], ["-"]),  # same place, new vehicle: new track
    (3.4, [moving(3.4, 170)], [0.9], ["b"]),
]


def test_reappearing_box_keeps_id_and_ids_are_never_reused() -> None:
    run_table(REAPPEARS)


def away(k: int, side: float = 80.0) -> list[float]:
    """A vehicle driving away at 5 fps: 20 px right and 30 px up per frame."""
    return box_centred(100 + 20 * k, 500 - 30 * k, side, side)


def far(k: int) -> list[float]:
    """A far, small vehicle, first seen where ``away`` predicts the lost vehicle at 1.4 s."""
    return box_centred(240 + 4 * k, 290 - 6 * k, 25, 25)


# A near vehicle is lost (hidden behind another) and, where its track is predicted to be, a
# far, small vehicle shows up: a different vehicle, which must not inherit the lost track's id
# (it would carry the lost track over a counting line it never crossed).
LOST_TRACK_MEETS_SMALLER_VEHICLE: list[Row] = [
    (0.0, [away(0)], [0.9], ["-"]),
    (0.2, [away(1)], [0.9], ["a"]),
    (0.4, [away(2)], [0.9], ["a"]),
    (0.6, [], [], []),
    (0.8, [], [], []),
    (1.0, [], [], []),
    (1.2, [], [], []),
    (1.4, [far(0)], [0.9], ["-"]),  # centred on a's prediction, a third of its size
    (1.6, [far(1)], [0.9], ["b"]),
]

# The same vehicle seen again after the gap keeps its id, a little smaller as it drives away.
LOST_TRACK_REAPPEARS_SMALLER: list[Row] = [
    *LOST_TRACK_MEETS_SMALLER_VEHICLE[:7],
    (1.4, [away(7, side=60)], [0.9], ["a"]),
]


@pytest.mark.parametrize(
    "rows",
    [LOST_TRACK_MEETS_SMALLER_VEHICLE, LOST_TRACK_REAPPEARS_SMALLER],
    ids=["other-vehicle", "same-vehicle"],
)
def test_lost_track_only_takes_a_box_of_its_size(rows: list[Row]) -> None:
    run_table(rows)


def test_without_the_size_gate_a_lost_track_jumps_to_another_vehicle() -> None:
    """Why ``max_size_change`` exists: the far car takes over the lost near vehicle's id."""
    cfg = CFG.model_copy(update={"max_size_change": 0.0})
    with pytest.raises(AssertionError, match="labels share ids"):
        run_table([*LOST_TRACK_MEETS_SMALLER_VEHICLE[:-2], (1.4, [far(0)], [0.9], ["b"])], cfg)


def test_input_is_not_mutated_and_classes_pass_through() -> None:
    boxes = [box_centred(100, 100, 60, 40), box_centred(300, 100, 60, 40)]
    classes = [VehicleClass.CAR, VehicleClass.BUS]
    tracker = Tracker(CFG)
    tracker.update(make_detections(xyxy=boxes, class_id=classes), 0.0)
    dets = make_detections(xyxy=boxes, tracker_id=[7, 8], confidence=[0.9, 0.8], class_id=classes)
    assert dets.tracker_id is not None
    arrays: tuple[np.ndarray, ...] = (dets.xyxy, dets.confidence, dets.class_id, dets.tracker_id)
    before = [a.copy() for a in arrays]
    out = tracker.update(dets, 0.1)
    assert all(np.array_equal(b, a) for b, a in zip(before, arrays, strict=True))
    assert dets.tracker_id.tolist() == [7, 8]
    assert out is not dets
    assert out.class_id.tolist() == [VehicleClass.CAR.id, VehicleClass.BUS.id]
    assert out.confidence.tolist() == pytest.approx([0.9, 0.8])
    assert out.tracker_id is not None and set(out.tracker_id.tolist()) == tracker.active_ids()


def test_time_must_not_go_back() -> None:
    tracker = Tracker(CFG)
    tracker.update(make_detections(), 1.0)
    with pytest.raises(ValueError, match="time went back"):
        tracker.update(make_detections(), 0.5)


@pytest.mark.parametrize(
    "a, b, iou",
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
        ([0, 0, 10, 10], [5, 0, 15, 10], 1 / 3),
        ([0, 0, 10, 10], [20, 20, 30, 30], 0.0),
    ],
)
def test_iou_matrix(a: Box, b: Box, iou: float) -> None:
    assert iou_matrix([a], [b])[0, 0] == pytest.approx(iou)


def test_association_cost_gates_far_boxes() -> None:
    track = [[0, 0, 30, 40]]  # diagonal 50
    dets = [[0, 0, 30, 40], [20, 0, 50, 40], [100, 0, 130, 40]]
    cost = association_cost(track, dets, min_iou=0.2, max_distance=0.5)[0]
    assert cost[0] == pytest.approx(0.0)
    assert cost[1] == pytest.approx(1 - 10 / 50 + 20 / 50)  # IoU 0.2, distance 0.4
    assert cost[2] >= 1e6


@pytest.mark.parametrize(
    "side, allowed",
    [(40, True), (20, True), (14, False), (80, True), (81, False)],
)
def test_sizes_agree_within_the_factor(side: float, allowed: bool) -> None:
    track = [box_centred(100, 100, 40, 40)]
    det = [box_centred(300, 100, side, side)]
    assert sizes_agree(track, det, 2.0).tolist() == [[allowed]]
