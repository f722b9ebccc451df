"""The vehicle-class classifier: a second look at each counted vehicle, at the frame's resolution.

The detector sees a whole frame squeezed to 320x320, where a small truck is a few pixels and often
scores as a car. The counter keeps, for each live track, a few crops of its largest boxes cut from
the full frame; when the track ends and has crossed a line, this small CNN classifies those crops
and its averaged probabilities decide the crossing's class when they reach
``counter.class_override`` (``aggregator/lines.py``).

A crop is the box grown by ``margin`` on each side and resized to ``input_size`` squared (so a
frame's aspect ratio, squeezed or not, does not matter). The network is a convolution stem and
torchvision ResNet ``BasicBlock`` stages with Kaiming initialisation, global average pooling,
dropout and a linear layer over the detector's classes. It is trained on crops of the labelled
boxes (``detector/crop_train.py``).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock

from truckcount.detector.augment import to_tensor
from truckcount.detector.onnx_runtime import (
    cached_export,
    export_module,
    open_session,
    provenance,
)
from truckcount.detector.weights import CheckpointError, load_checkpoint, model_version
from truckcount.types import CLASSES

KIND = "crop-classifier"
INPUT, OUTPUT = "crops", "logits"
Image = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class CropConfig:
    """Shape of the classifier: crop side in pixels, context margin, stage widths, dropout."""

    input_size: int = 64
    margin: float = 0.1
    stem: int = 16
    widths: tuple[int, ...] = (24, 48, 96, 160)
    dropout: float = 0.2

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "widths": list(self.widths)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CropConfig:
        return cls(**{**d, "widths": tuple(d["widths"])})


def _stage(c_in: int, c_out: int) -> BasicBlock:
    down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, 2, bias=False), nn.BatchNorm2d(c_out))
    return BasicBlock(c_in, c_out, stride=2, downsample=down)


class CropNet(nn.Module):
    """Crops (B, 3, S, S) -> class logits (B, classes)."""

    def __init__(self, cfg: CropConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or CropConfig()
        chans = (cfg.stem, *cfg.widths)
        self.features = nn.Sequential(
            nn.Conv2d(3, cfg.stem, 3, padding=1, bias=False),
            nn.BatchNorm2d(cfg.stem),
            nn.ReLU(inplace=True),
            *(_stage(a, b) for a, b in itertools.pairwise(chans)),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(chans[-1], len(CLASSES)))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def crop_box(
    image: Image,
    xyxy: npt.ArrayLike,
    cfg: CropConfig,
    jitter: npt.NDArray[np.float64] | None = None,
) -> Image:
    """The box (frame pixels) grown by ``cfg.margin`` per side, resized to a square crop.

    Parts outside the frame repeat its edge; shrinking smooths (a Gaussian pyramid while the box
    is over twice the crop, then bilinear, or area averaging for a box still over twice the crop
    on its long side), so there is little aliasing and a box
    of a 1280x720 frame and the same box of a 640x360 frame give nearly the same crop.

    Args:
        image: the full BGR frame.
        xyxy: box corners in ``image`` pixels.
        cfg: crop size and margin.
        jitter: optional (dx, dy, log_w, log_h) in box sizes (training: imitates detector boxes).
    """
    x1, y1, x2, y2 = (float(v) for v in np.asarray(xyxy, np.float64).reshape(4))
    w, h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    if jitter is not None:
        cx, cy = cx + jitter[0] * w, cy + jitter[1] * h
        w, h = w * float(np.exp(jitter[2])), h * float(np.exp(jitter[3]))
    w, h = w * (1 + 2 * cfg.margin), h * (1 + 2 * cfg.margin)
    x0, y0 = math.floor(cx - w / 2), math.floor(cy - h / 2)
    x1_, y1_ = max(math.ceil(cx + w / 2), x0 + 1), max(math.ceil(cy + h / 2), y0 + 1)
    rows, cols = image.shape[:2]
    region = image[max(y0, 0) : min(y1_, rows), max(x0, 0) : min(x1_, cols)]
    s = cfg.input_size
    if region.size == 0:  # the box lies outside the frame
        return np.zeros((s, s, 3), np.uint8)
    pad = (max(-y0, 0), max(y1_ - rows, 0), max(-x0, 0), max(x1_ - cols, 0))
    if any(pad):
        region = np.asarray(cv2.copyMakeBorder(region, *pad, cv2.BORDER_REPLICATE), np.uint8)
    while min(region.shape[:2]) >= 2 * s:  # halve large boxes first: area averaging is slow
        region = np.asarray(cv2.pyrDown(region), np.uint8)
    flags = cv2.INTER_AREA if max(region.shape[:2]) > 2 * s else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(region, (s, s), interpolation=flags), np.uint8)


class CropClassifier:
    """The trained classifier: crops -> class probabilities (rows follow ``CLASSES``).

    Args:
        path: a checkpoint written by ``truckcount train-classifier`` (or exported from one).
        device: where it runs; CUDA when the device is CUDA.
        runtime: ``torch`` (eager) or ``onnx`` (ONNX Runtime, from an export of the checkpoint
            kept in the user cache, as for the detector; same probabilities within 1e-5).
    """

    def __init__(self, path: Path, device: torch.device, runtime: str = "torch") -> None:
        state = load_checkpoint(path)
        if state.get("kind") != KIND:
            raise CheckpointError(f"{path} is not a vehicle-class (crop) classifier checkpoint")
        if list(state["classes"]) != [c.value for c in CLASSES]:
            raise CheckpointError(f"{path}: classes {state['classes']} differ from {CLASSES}")
        self.cfg = CropConfig.from_dict(state["model_config"])
        self.net = CropNet(self.cfg)
        try:
            self.net.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: weights do not fit the network ({exc})") from exc
        self.net.eval()
        self.session = self._session(path, device) if runtime == "onnx" else None
        self.net.to(device).to(memory_format=torch.channels_last)
        self.device = device

    def _session(self, path: Path, device: torch.device) -> Any:
        onnx_path = self._export(path)
        try:
            return open_session(onnx_path, device)
        except Exception as exc:  # onnxruntime's errors share no public base class
            raise CheckpointError(
                f"cannot load {onnx_path}, the ONNX export of {path} ({exc}); "
                "delete it to re-export"
            ) from exc

    def _export(self, path: Path) -> Path:
        """The cached ONNX export of the checkpoint at ``path`` (written on first use)."""
        version = model_version(path)
        meta = provenance(version, self.cfg.to_dict(), kind=KIND)
        item = (3, self.cfg.input_size, self.cfg.input_size)
        net = self.net.float().cpu()
        return cached_export(
            version, lambda out: export_module(net, item, (INPUT, (OUTPUT,)), meta, out)
        )

    def crop(self, image: Image, xyxy: npt.ArrayLike) -> Image:
        """The crop this classifier reads for one box of ``image``."""
        return crop_box(image, xyxy, self.cfg)

    @torch.inference_mode()
    def probabilities(self, crops: list[Image]) -> npt.NDArray[np.float32]:
        """(N, classes) softmax probabilities of crops made by ``crop``."""
        if not crops:
            return np.zeros((0, len(CLASSES)), np.float32)
        x = to_tensor(crops)
        if self.session is not None:
            logits = torch.from_numpy(self.session.run([OUTPUT], {INPUT: x.numpy()})[0])
        else:
            logits = self.net(x.to(self.device).contiguous(memory_format=torch.channels_last))
        return np.asarray(torch.softmax(logits.float(), 1).cpu().numpy(), np.float32)
