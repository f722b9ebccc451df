"""Augmentation for a fixed traffic camera, and the training ``Dataset``.

The camera does not move, so geometry changes stay mild (zoomed crops, horizontal flip); light
changes are strong (colour, blur, and night-like darkening with sensor noise), since night is
where a model trained mostly on day frames fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import Dataset

from truckcount.detector.data import Sample
from truckcount.detector.loss import build_targets

Image = npt.NDArray[np.uint8]
MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of each augmentation."""

    crop_p: float = 0.6
    crop_scale: tuple[float, float] = (0.55, 1.0)
    shrink_p: float = 0.0  # zooming out raised false trucks on other footage (model card)
    shrink_scale: tuple[float, float] = (0.45, 0.9)
    flip_p: float = 0.5
    colour_p: float = 0.8
    blur_p: float = 0.2
    dark_p: float = 0.25
    min_visible: float = 0.4


def to_tensor(images: Sequence[Image]) -> torch.Tensor:
    """Stack BGR uint8 images (same size) into a normalised RGB float tensor (B, 3, H, W)."""
    batch = np.stack(images)[..., ::-1].astype(np.float32)
    batch = (batch - MEAN) / STD
    return torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))


def random_crop(
    img: Image, boxes: np.ndarray, classes: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig
) -> tuple[Image, np.ndarray, np.ndarray]:
    """Zoom into a random window; keep boxes that stay mostly visible (normalised coords)."""
    s = rng.uniform(*cfg.crop_scale)
    sw, sh = s, float(np.clip(s * rng.uniform(0.8, 1.25), 0.25, 1.0))
    x0, y0 = rng.uniform(0, 1 - sw), rng.uniform(0, 1 - sh)
    h, w = img.shape[:2]
    crop = img[int(y0 * h) : int((y0 + sh) * h), int(x0 * w) : int((x0 + sw) * w)]
    b = (boxes - [x0, y0, x0, y0]) / [sw, sh, sw, sh]
    clipped = np.clip(b, 0, 1)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    area_c = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    keep = area_c >= cfg.min_visible * np.maximum(area, 1e-9)
    return crop, clipped[keep].astype(np.float32), classes[keep]


def shrink(
    img: Image, boxes: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig
) -> tuple[Image, np.ndarray]:
    """Zoom out: paste the frame, scaled down, at a random place on a grey canvas of the same size,
    so vehicles appear smaller than this camera ever shows them (other cameras, other mountings)."""
    s = rng.uniform(*cfg.shrink_scale)
    h, w = img.shape[:2]
    sh, sw = max(int(h * s), 1), max(int(w * s), 1)
    y0, x0 = int(rng.integers(0, h - sh + 1)), int(rng.integers(0, w - sw + 1))
    canvas = np.full_like(img, 114)
    canvas[y0 : y0 + sh, x0 : x0 + sw] = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)
    scale = np.array([sw / w, sh / h, sw / w, sh / h], np.float32)
    offset = np.array([x0 / w, y0 / h, x0 / w, y0 / h], np.float32)
    return canvas, boxes * scale + offset


def colour_jitter(img: Image, rng: np.random.Generator) -> Image:
    """Random brightness, contrast and saturation."""
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV).astype(np.float32)
    hsv[..., 1] *= rng.uniform(0.6, 1.4)
    hsv[..., 2] = hsv[..., 2] * rng.uniform(0.7, 1.3) + rng.uniform(-25, 25)
    out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2BGR)
    mean = out.mean()
    return np.clip((out - mean) * rng.uniform(0.75, 1.25) + mean, 0, 255).astype(np.uint8)


def darken(img: Image, rng: np.random.Generator) -> Image:
    """Make a day frame look like night: gamma darkening, desaturation, a cool tint, noise."""
    f = img.astype(np.float32) / 255.0
    f = f ** rng.uniform(1.8, 3.0) * rng.uniform(0.5, 0.9)
    grey = f.mean(axis=2, keepdims=True)
    f = grey + (f - grey) * rng.uniform(0.2, 0.6)
    f *= np.array([rng.uniform(1.0, 1.25), 1.0, rng.uniform(0.8, 1.0)], np.float32)
    f += rng.normal(0, rng.uniform(0.005, 0.03), f.shape).astype(np.float32)
    return np.clip(f * 255, 0, 255).astype(np.uint8)


def augment(
    img: Image, boxes: np.ndarray, classes: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig
) -> tuple[Image, np.ndarray, np.ndarray]:
    """Apply the random augmentation chain (boxes normalised xyxy)."""
    roll = rng.random()
    if roll < cfg.crop_p:
        img, boxes, classes = random_crop(img, boxes, classes, rng, cfg)
    elif roll < cfg.crop_p + cfg.shrink_p:
        img, boxes = shrink(img, boxes, rng, cfg)
    if rng.random() < cfg.flip_p:
        img = np.ascontiguousarray(img[:, ::-1])
        boxes = boxes[:, [2, 1, 0, 3]] * [-1, 1, -1, 1] + [1, 0, 1, 0]
    if rng.random() < cfg.colour_p:
        img = colour_jitter(img, rng)
    if rng.random() < cfg.dark_p:
        img = darken(img, rng)
    if rng.random() < cfg.blur_p:
        img = np.asarray(cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.5)), np.uint8)
    return img, boxes.astype(np.float32), classes


class DetectionDataset(Dataset[tuple[torch.Tensor, dict[str, torch.Tensor]]]):
    """Cached images + labels -> (image tensor, CenterNet targets), augmented when training."""

    def __init__(
        self,
        samples: Sequence[Sample],
        images: Sequence[Image],
        input_size: int,
        num_classes: int,
        augment_cfg: AugmentConfig | None = None,
        seed: int = 0,
    ) -> None:
        self.samples, self.images = list(samples), list(images)
        self.input_size, self.num_classes = input_size, num_classes
        self.augment_cfg, self.seed, self.epoch = augment_cfg, seed, 0

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Make each epoch's augmentation different but reproducible."""
        self.epoch = epoch

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        s, img = self.samples[i], self.images[i]
        boxes, classes = s.boxes, s.classes
        if self.augment_cfg is not None:
            rng = np.random.default_rng((self.seed, self.epoch, i))
            img, boxes, classes = augment(img, boxes, classes, rng, self.augment_cfg)
        size = self.input_size
        if img.shape[:2] != (size, size):
            img = np.asarray(
                cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR), np.uint8
            )
        targets = build_targets(boxes * size, classes, size, self.num_classes)
        return to_tensor([img])[0], targets
