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
from truckcount.detector.paste import InstanceBank

Image = npt.NDArray[np.uint8]
MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], np.float32) * 255
_MEAN_T = torch.from_numpy(MEAN).view(1, 3, 1, 1)
_STD_T = torch.from_numpy(STD).view(1, 3, 1, 1)


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
    mosaic_p: float = 0.0  # four frames' quarters side by side, vehicles at their own scale
    paste_p: float = 0.0  # share of frames given rare vehicles of their sequence (detector.paste)
    paste_max: int = 3  # at most this many pasted per frame


def to_tensor(images: Sequence[Image], device: torch.device | None = None) -> torch.Tensor:
    """Stack BGR uint8 images (same size) into a normalised RGB float tensor (B, 3, H, W).

    Without ``device``: a contiguous tensor on the CPU. With one: a channels-last tensor there,
    the layout the detector runs in; on a GPU the uint8 pixels travel (a quarter of the float
    bytes) and are converted there. The values are the same either way."""
    if device is not None and device.type != "cpu":
        return normalise_nhwc(torch.from_numpy(np.stack(images)).to(device))
    bgr = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    out = torch.empty(bgr.shape, dtype=torch.float32)  # contiguous NCHW
    for c in range(3):  # each copy converts and transposes one channel, red first
        out[:, c].copy_(bgr[:, 2 - c])
    out.sub_(_MEAN_T).div_(_STD_T)
    return out if device is None else out.contiguous(memory_format=torch.channels_last)


def normalise_nhwc(bgr: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) BGR uint8 on any device into what ``to_tensor`` gives, channels-last there."""
    rgb = bgr.flip(-1).to(torch.float32)  # red first
    rgb.sub_(_MEAN_T.view(3).to(bgr.device)).div_(_STD_T.view(3).to(bgr.device))
    return rgb.permute(0, 3, 1, 2)  # an NCHW view of NHWC memory


def _mostly_visible(boxes: np.ndarray, clipped: np.ndarray, min_visible: float) -> np.ndarray:
    """Which boxes keep at least ``min_visible`` of their area after clipping."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area_c = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    return np.asarray(area_c >= min_visible * np.maximum(area, 1e-9))


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
    keep = _mostly_visible(b, clipped, cfg.min_visible)
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


def _window(
    boxes: np.ndarray,
    src: tuple[float, float],
    dst: tuple[float, float, float, float],
    classes: np.ndarray,
    min_visible: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes of the source window at ``src`` (top-left) moved to the canvas region ``dst``."""
    x0, y0, x1, y1 = dst
    b = boxes - [src[0], src[1], src[0], src[1]]
    clipped = np.clip(b, 0, [x1 - x0, y1 - y0, x1 - x0, y1 - y0])
    keep = _mostly_visible(b, clipped, min_visible)
    return clipped[keep] + [x0, y0, x0, y0], classes[keep]


def mosaic(
    parts: Sequence[tuple[Image, np.ndarray, np.ndarray]],
    rng: np.random.Generator,
    min_visible: float,
) -> tuple[Image, np.ndarray, np.ndarray]:
    """Tile four frames' windows around a random centre without rescaling them.

    The camera is fixed, so vehicles keep the size they have at that place; what changes is
    where they appear and what surrounds them, which a model trained on three videos would
    otherwise memorise. Frames are same-sized; boxes are normalised xyxy.
    """
    canvas = np.empty_like(parts[0][0])
    h, w = canvas.shape[:2]
    cx, cy = (round(v * n) / n for v, n in zip(rng.uniform(0.3, 0.7, 2), (w, h), strict=True))
    regions = [(0.0, 0.0, cx, cy), (cx, 0.0, 1.0, cy), (0.0, cy, cx, 1.0), (cx, cy, 1.0, 1.0)]
    all_boxes, all_classes = [], []
    for (img, boxes, classes), (x0, y0, x1, y1) in zip(parts, regions, strict=True):
        pw, ph = round((x1 - x0) * w), round((y1 - y0) * h)
        sx, sy = int(rng.integers(0, w - pw + 1)), int(rng.integers(0, h - ph + 1))
        canvas[round(y0 * h) : round(y0 * h) + ph, round(x0 * w) : round(x0 * w) + pw] = img[
            sy : sy + ph, sx : sx + pw
        ]
        b, c = _window(boxes, (sx / w, sy / h), (x0, y0, x1, y1), classes, min_visible)
        all_boxes.append(b)
        all_classes.append(c)
    return canvas, np.concatenate(all_boxes).astype(np.float32), np.concatenate(all_classes)


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
    img: Image,
    boxes: np.ndarray,
    classes: np.ndarray,
    rng: np.random.Generator,
    cfg: AugmentConfig,
    geometry: bool = True,
) -> tuple[Image, np.ndarray, np.ndarray]:
    """Apply the random augmentation chain (boxes normalised xyxy)."""
    roll = rng.random() if geometry else 1.0
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
        bank: InstanceBank | None = None,
        ambiguous: Sequence[int] = (),
    ) -> None:
        self.samples, self.images = list(samples), list(images)
        self.ambiguous = tuple(ambiguous)  # classes an AMBIGUOUS box may be (loss.build_targets)
        self.input_size, self.num_classes = input_size, num_classes
        self.augment_cfg, self.seed = augment_cfg, seed
        self.bank = bank
        # in shared memory: DataLoader workers (persistent ones too) hold a copy of the dataset
        # made when they started, and must still see each new epoch
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Make each epoch's augmentation different but reproducible, in every worker."""
        self._epoch.fill_(epoch)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        s, img = self.samples[i], self.images[i]
        boxes, classes = s.boxes, s.classes
        if self.augment_cfg is not None:
            cfg = self.augment_cfg
            rng = np.random.default_rng((self.seed, self.epoch, i))
            if self.bank is not None and rng.random() < cfg.paste_p:
                count = int(rng.integers(1, cfg.paste_max + 1))
                img, boxes, classes = self.bank.paste(
                    img, boxes, classes, s.sequence, self.images, rng, count
                )
            tiled = cfg.mosaic_p > 0 and rng.random() < cfg.mosaic_p
            if tiled:
                picks = [int(j) for j in rng.integers(0, len(self), 3)]
                parts = [(img, boxes, classes)] + [
                    (self.images[j], self.samples[j].boxes, self.samples[j].classes) for j in picks
                ]
                img, boxes, classes = mosaic(parts, rng, cfg.min_visible)
            img, boxes, classes = augment(img, boxes, classes, rng, cfg, geometry=not tiled)
        size = self.input_size
        if img.shape[:2] != (size, size):
            img = np.asarray(
                cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR), np.uint8
            )
        targets = build_targets(boxes * size, classes, size, self.num_classes, self.ambiguous)
        return to_tensor([img])[0], targets
