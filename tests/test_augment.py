"""Augmentations move boxes together with the pixels they label."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from truckcount.detector.augment import (
    AugmentConfig,
    DetectionDataset,
    mosaic,
    random_crop,
    shrink,
)
from truckcount.detector.data import Sample


def _frame_with_box(box: tuple[float, float, float, float]) -> np.ndarray:
    img = np.zeros((200, 300, 3), np.uint8)
    x0, y0, x1, y1 = box
    img[int(y0 * 200) : int(y1 * 200), int(x0 * 300) : int(x1 * 300)] = 255
    return img


def _mean_inside(img: np.ndarray, box: np.ndarray) -> float:
    h, w = img.shape[:2]
    x0, y0, x1, y1 = box
    inner = img[int(y0 * h) + 2 : int(y1 * h) - 2, int(x0 * w) + 2 : int(x1 * w) - 2]
    return float(inner.mean())


@pytest.mark.parametrize("seed", range(5))
def test_shrink_keeps_the_box_on_its_pixels_and_makes_it_smaller(seed: int) -> None:
    box = np.array([[0.3, 0.3, 0.7, 0.8]], np.float32)
    img = _frame_with_box(tuple(box[0]))
    out, moved = shrink(img, box, np.random.default_rng(seed), AugmentConfig())
    assert out.shape == img.shape
    assert _mean_inside(out, moved[0]) > 250
    assert (moved[0, 2] - moved[0, 0]) < (box[0, 2] - box[0, 0])
    assert ((moved >= 0) & (moved <= 1)).all()


@pytest.mark.parametrize("seed", range(5))
def test_random_crop_keeps_visible_boxes_on_their_pixels(seed: int) -> None:
    box = np.array([[0.4, 0.4, 0.6, 0.6]], np.float32)
    img = _frame_with_box(tuple(box[0]))
    cfg = AugmentConfig(crop_scale=(0.8, 0.9))
    out, moved, classes = random_crop(img, box, np.array([0]), np.random.default_rng(seed), cfg)
    assert len(moved) == len(classes) == 1
    assert _mean_inside(out, moved[0]) > 250


@pytest.mark.parametrize("seed", range(5))
def test_mosaic_keeps_every_box_on_its_pixels_at_its_own_size(seed: int) -> None:
    box = np.array([[0.35, 0.4, 0.55, 0.6]], np.float32)
    img = _frame_with_box(tuple(box[0]))
    parts = [(img, box, np.array([k])) for k in range(4)]  # class = which frame it came from
    out, moved, classes = mosaic(parts, np.random.default_rng(seed), min_visible=0.4)
    assert out.shape == img.shape
    assert len(moved) == len(classes) >= 1
    for b in moved:
        assert _mean_inside(out, b) > 250
    whole = [b for b in moved if np.allclose(b[2:] - b[:2], box[0, 2:] - box[0, :2], atol=0.02)]
    assert all(np.isclose(b[2] - b[0], 0.2, atol=0.02) for b in whole)  # never rescaled
    assert ((moved >= 0) & (moved <= 1)).all()


def test_mosaic_drops_boxes_that_are_mostly_outside_their_window() -> None:
    box = np.array([[0.0, 0.0, 1.0, 1.0]], np.float32)  # the whole frame: no window shows 40 %
    img = np.full((200, 300, 3), 255, np.uint8)
    parts = [(img, box, np.array([0]))] * 4
    _, moved, classes = mosaic(parts, np.random.default_rng(0), min_visible=0.5)
    assert len(moved) == len(classes) == 0


def _dataset() -> DetectionDataset:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(2)]
    box = np.array([[0.2, 0.2, 0.6, 0.7]], np.float32)
    samples = [Sample(Path(f"s-{i}.jpg"), "s", i, box, np.array([0])) for i in range(2)]
    return DetectionDataset(samples, images, 64, 3, AugmentConfig(crop_p=1.0), seed=0)


def test_a_persistent_loader_worker_augments_each_epoch_anew() -> None:
    # A worker keeps the copy of the dataset it started with; the epoch must still reach it,
    # or every epoch repeats the first one's crops, flips and colours (and the model over-fits
    # that one fixed set).
    dataset = _dataset()
    loader = DataLoader(dataset, batch_size=2, num_workers=1, persistent_workers=True)
    seen = []
    for epoch in range(3):
        dataset.set_epoch(epoch)
        seen.append(next(iter(loader))[0])
    assert not torch.equal(seen[0], seen[1])
    assert not torch.equal(seen[1], seen[2])
    dataset.set_epoch(1)
    assert torch.equal(next(iter(loader))[0], seen[1])  # still reproducible
