"""Copy-paste: rare vehicles go back where their sequence filmed them, and never hide a label."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from truckcount.detector.data import Sample
from truckcount.detector.paste import InstanceBank

TRUCK, CAR = 0, 2


def _sample(seq: str, index: int, boxes: list[list[float]], classes: list[int]) -> Sample:
    return Sample(
        Path(f"{seq}-{index:05d}.jpg"),
        seq,
        index,
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(classes, np.int64),
    )


def _grey(value: int) -> np.ndarray:
    return np.full((100, 200, 3), value, np.uint8)


def test_the_bank_keeps_isolated_rare_vehicles_once_per_frame() -> None:
    alone = [0.1, 0.1, 0.3, 0.4]
    crowded = [0.5, 0.5, 0.7, 0.8]
    neighbour = [0.6, 0.6, 0.9, 0.9]  # overlaps the crowded truck
    tiny = [0.0, 0.9, 0.01, 0.95]
    s = _sample("day", 1, [alone, crowded, neighbour, tiny], [TRUCK, TRUCK, CAR, TRUCK])
    bank = InstanceBank([s, s], [TRUCK])  # a repeated (oversampled) frame counts once
    assert len(bank) == 1
    (inst,) = bank.by_sequence["day"]
    np.testing.assert_allclose(inst.box, alone)
    assert inst.class_id == TRUCK


def test_a_paste_puts_the_donor_pixels_at_the_same_place_and_adds_the_box() -> None:
    truck = [0.5, 0.2, 0.75, 0.6]
    donor = _sample("day", 1, [truck], [TRUCK])
    target = _sample("day", 2, [[0.0, 0.0, 0.2, 0.3]], [CAR])
    images = [_grey(200), _grey(30)]
    bank = InstanceBank([donor, target], [TRUCK])
    rng = np.random.default_rng(0)
    img, boxes, classes = bank.paste(images[1], target.boxes, target.classes, "day", images, rng, 3)
    assert classes.tolist() == [CAR, TRUCK]
    np.testing.assert_allclose(boxes[1], truck)
    assert (img[20:60, 100:150] == 200).all()  # the truck's rectangle, from the donor
    assert (img[:20] == 30).all() and (img[:, :100] == 30).all()  # the rest untouched
    assert (images[1] == 30).all()  # the cached frame itself is not modified


def test_no_paste_over_a_labelled_vehicle_nor_across_sequences() -> None:
    truck = [0.5, 0.2, 0.75, 0.6]
    donor = _sample("day", 1, [truck], [TRUCK])
    blocked = _sample("day", 2, [[0.55, 0.25, 0.7, 0.5]], [CAR])  # under the truck's place
    images = [_grey(200), _grey(30)]
    bank = InstanceBank([donor], [TRUCK])
    rng = np.random.default_rng(0)
    img, boxes, _ = bank.paste(images[1], blocked.boxes, blocked.classes, "day", images, rng, 3)
    assert len(boxes) == 1 and (img == 30).all()
    night = _sample("night", 3, [], [])
    img, boxes, _ = bank.paste(images[1], night.boxes, night.classes, "night", images, rng, 3)
    assert len(boxes) == 0 and (img == 30).all()


def test_training_frames_get_pasted_trucks_only_when_asked() -> None:
    from truckcount.detector.augment import AugmentConfig, DetectionDataset

    donor = _sample("day", 1, [[0.5, 0.2, 0.75, 0.6]], [TRUCK])
    target = _sample("day", 2, [[0.0, 0.0, 0.2, 0.3]], [CAR])
    images = [np.full((128, 128, 3), 200, np.uint8), np.full((128, 128, 3), 30, np.uint8)]
    still = AugmentConfig(crop_p=0, flip_p=0, colour_p=0, blur_p=0, dark_p=0, paste_p=1.0)
    bank = InstanceBank([donor, target], [TRUCK])
    pasted = DetectionDataset([donor, target], images, 128, 3, still, bank=bank)
    plain = DetectionDataset([donor, target], images, 128, 3, still)
    assert int(pasted[1][1]["mask"].sum()) == 2  # the car and the pasted truck
    assert float(pasted[1][1]["heatmap"][TRUCK].max()) == 1.0
    assert int(plain[1][1]["mask"].sum()) == 1
    assert float(plain[1][1]["heatmap"][TRUCK].max()) == 0.0
