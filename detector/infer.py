"""Batched inference on frames of any size: ``Detector.predict(frames) -> list[Detections]``.

Frames are resized (not letterboxed) to the square input, as the training images were stretched to a
square from the camera's aspect ratio; boxes are scaled back per axis to frame pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from truckcount.config import DetectorConfig
from truckcount.detector.engine import predict
from truckcount.detector.model import ModelConfig, TruckNet
from truckcount.detector.weights import CheckpointError, load_checkpoint, model_version, pick_device
from truckcount.types import CLASSES, Detections, Frame

log = logging.getLogger(__name__)


def load_model(path: Path, device: torch.device) -> tuple[TruckNet, str]:
    """Build the network from a checkpoint; return it (eval mode) and its version string."""
    state = load_checkpoint(path)
    if list(state["classes"]) != [c.value for c in CLASSES]:
        raise CheckpointError(f"{path}: classes {state['classes']} differ from {list(CLASSES)}")
    model = TruckNet(ModelConfig.from_dict(state["model_config"]))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the network ({exc})") from exc
    model = model.to(device).to(memory_format=torch.channels_last).eval()
    return model, model_version(path)


class Detector:
    """The trained CNN, run in batches on CUDA when present, else on CPU."""

    def __init__(self, cfg: DetectorConfig) -> None:
        self.cfg = cfg
        self.device = pick_device(cfg.device)
        self.model, self.version = load_model(Path(cfg.weights), self.device)
        self.input_size = self.model.cfg.input_size
        log.info("detector %s on %s", self.version, self.device)

    def predict(self, frames: Sequence[Frame]) -> list[Detections]:
        """Detect vehicles in each frame; boxes are in that frame's pixels."""
        if not frames:
            return []
        s = self.input_size
        images = [cv2.resize(f.image, (s, s), interpolation=cv2.INTER_AREA) for f in frames]
        preds = predict(
            self.model,
            images,
            self.device,
            batch_size=self.cfg.batch_size,
            amp=self.cfg.precision == "bf16",
            score_threshold=self.cfg.score_threshold,
            nms_iou=self.cfg.nms_iou,
            max_detections=self.cfg.max_detections,
        )
        out = []
        for frame, (boxes, scores, classes) in zip(frames, preds, strict=True):
            w, h = frame.size
            scale = np.array([w / s, h / s, w / s, h / s], np.float32)
            xyxy = np.clip(boxes * scale, 0, [w, h, w, h]).astype(np.float32)
            out.append(Detections(xyxy, scores.astype(np.float32), classes.astype(np.int64)))
        return out
