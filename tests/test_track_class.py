"""A crop classifier deciding the class of counted tracks, as per-frame tables.

The judge here is a rule, not a network: a crop whose red channel is bright is a truck, any other
crop a car. Frames are black with the track's box painted red where it should look like a truck,
so a test passes only if the counter cuts its crops from the right frame and the right box.
Geometry as in ``test_lines.py``: 640x360 frames at 10 fps, line "gate" at y = 180.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from tests.helpers import box_at, make_detections, make_frame
from tests.test_lines import DT, GATE
from truckcount.aggregator.lines import LineCounter
from truckcount.config import CounterConfig
from truckcount.detector.crop_classifier import CropConfig, crop_box
from truckcount.types import Crossing, VehicleClass

TRUCK, CAR = VehicleClass.TRUCK, VehicleClass.CAR
RED = (0, 0, 255)


class RedIsTruck:
    """Crops of 16x16; probability ``sure`` truck when their mean red level passes 128, else car."""

    def __init__(self, sure: float = 0.9) -> None:
        self.cfg = CropConfig(input_size=16, margin=0.0)
        self.sure = sure
        self.batches: list[int] = []

    def crop(self, image: npt.NDArray[np.uint8], xyxy: npt.ArrayLike) -> npt.NDArray[np.uint8]:
        return crop_box(image, xyxy, self.cfg)

    def probabilities(self, crops: list[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        self.batches.append(len(crops))
        red = np.array([c[..., 2].mean() > 128 for c in crops])
        out = np.full((len(crops), 3), (1 - self.sure) / 2, np.float32)
        out[red, TRUCK.id] = self.sure
        out[~red, CAR.id] = self.sure
        return out


def counter(judge: RedIsTruck, **cfg: object) -> LineCounter:
    return LineCounter(
        "cam",
        (GATE,),
        CounterConfig.model_validate(cfg),
        model_version="test-model",
        run_id="run-1",
        track_timeout_s=1.0,
        classifier=judge,
    )


# One row per frame: (anchor y, box width, box painted red?, detector class, detector score).
Row = tuple[float, float, bool, VehicleClass, float]


def feed(lc: LineCounter, rows: Sequence[Row]) -> list[Crossing]:
    out: list[Crossing] = []
    for k, (y, w, red, cls, score) in enumerate(rows):
        frame = make_frame(k * DT)
        box = box_at(320.0, y, w=w, h=w * 0.6)
        if red:
            x1, y1, x2, y2 = (round(v) for v in box)
            frame.image[max(y1, 0) : y2, x1:x2] = RED
        dets = make_detections(xyxy=[box], tracker_id=[1], class_id=[cls], confidence=[score])
        out += lc.update(frame, dets)
    return out + lc.flush()


def test_the_classifier_overrules_the_detectors_vote() -> None:
    rows = [(y, 60.0, True, CAR, 0.8) for y in (150, 165, 195, 210)]
    (crossing,) = feed(counter(RedIsTruck()), rows)
    assert crossing.class_name is TRUCK
    assert crossing.confidence == np.float32(0.9)


def test_an_unsure_classifier_leaves_the_vote_standing() -> None:
    rows = [(y, 60.0, True, CAR, 0.8) for y in (150, 165, 195, 210)]
    (crossing,) = feed(counter(RedIsTruck(sure=0.55), class_override=0.6), rows)
    assert crossing.class_name is CAR
    assert crossing.confidence == np.float32(0.8)  # the detector's mean score of its car boxes
    (crossing,) = feed(counter(RedIsTruck(sure=0.55), class_override=0.5), rows)
    assert crossing.class_name is TRUCK


def test_a_car_that_looks_like_a_car_stays_a_car() -> None:
    rows = [(y, 60.0, False, TRUCK, 0.8) for y in (150, 165, 195, 210)]
    (crossing,) = feed(counter(RedIsTruck()), rows)
    assert crossing.class_name is CAR


def test_only_the_largest_boxes_are_read() -> None:
    # The box grows as the vehicle nears the camera; only the two largest look like a truck.
    rows: list[Row] = [
        (150, 40.0, False, CAR, 0.8),
        (160, 50.0, False, CAR, 0.8),
        (170, 60.0, False, CAR, 0.8),
        (195, 90.0, True, CAR, 0.8),
        (210, 100.0, True, CAR, 0.8),
    ]
    judge = RedIsTruck()
    (crossing,) = feed(counter(judge, track_crops=2), rows)
    assert crossing.class_name is TRUCK
    assert judge.batches == [2]  # one call per counted track, with its kept crops only


def test_the_small_boxes_do_not_outvote_the_large_ones() -> None:
    # Same track, but now only the small early boxes are red: the kept crops say car.
    rows: list[Row] = [
        (150, 40.0, True, TRUCK, 0.8),
        (160, 50.0, True, TRUCK, 0.8),
        (170, 60.0, True, TRUCK, 0.8),
        (195, 90.0, False, TRUCK, 0.8),
        (210, 100.0, False, TRUCK, 0.8),
    ]
    (crossing,) = feed(counter(RedIsTruck(), track_crops=2), rows)
    assert crossing.class_name is CAR


def test_a_weak_track_is_not_counted_whatever_its_crops_look_like() -> None:
    rows = [(y, 60.0, True, CAR, 0.2) for y in (150, 165, 195, 210)]
    judge = RedIsTruck()
    assert feed(counter(judge), rows) == []
    assert judge.batches == []  # the classifier is not even asked


def test_a_track_that_never_crosses_is_never_classified() -> None:
    rows = [(y, 60.0, True, CAR, 0.8) for y in (100, 110, 120, 130)]
    judge = RedIsTruck()
    lc = counter(judge)
    assert feed(lc, rows) == []
    assert judge.batches == [] and len(lc) == 0


def test_reclassified_tracks_obey_the_recorded_classes() -> None:
    rows = [(y, 60.0, True, CAR, 0.8) for y in (150, 165, 195, 210)]
    assert feed(counter(RedIsTruck(), classes=["car"]), rows) == []


def test_tracks_ending_together_are_classified_in_one_batch_each_by_its_own_crops() -> None:
    # Two vehicles side by side cross together; only the left one is painted red. Both tracks
    # end at the flush: one classifier call with both tracks' crops, split back per track.
    judge = RedIsTruck()
    lc = counter(judge, track_crops=3)
    out: list[Crossing] = []
    for k, y in enumerate((150, 165, 195, 210)):
        frame = make_frame(k * DT)
        left, right = box_at(200.0, y), box_at(440.0, y)
        x1, y1, x2, y2 = (round(v) for v in left)
        frame.image[max(y1, 0) : y2, x1:x2] = RED
        dets = make_detections(xyxy=[left, right], tracker_id=[1, 2], class_id=CAR)
        out += lc.update(frame, dets)
    out += lc.flush()
    assert {c.track_id: c.class_name for c in out} == {1: TRUCK, 2: CAR}
    assert judge.batches == [6]
