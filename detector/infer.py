"""Batched inference on frames of any size: ``Detector.predict(frames) -> list[Detections]``.

Frames are resized (not letterboxed) to the square input, as the training images were stretched to a
square from the camera's aspect ratio; boxes are scaled back per axis to frame pixels.

The network runs in eager PyTorch (``runtime: torch``) or ONNX Runtime (``runtime: onnx``, from a
``.onnx`` file, or exported once from the checkpoint into the user cache); decoding and NMS are the
same torch code for both.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from truckcount.config import DetectorConfig
from truckcount.detector.engine import predict
from truckcount.detector.model import ModelConfig, TruckNet
from truckcount.detector.onnx_runtime import OnnxNetwork, cached_export, export_onnx
from truckcount.detector.tta import FlipAverage
from truckcount.detector.weights import (
    CheckpointError,
    load_checkpoint,
    model_version,
    native_bf16,
    pick_device,
)
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


def onnx_file(weights: Path, input_size: int | None = None) -> Path:
    """An ONNX file for ``weights``: itself when it is one, else the cached export of it.

    The export takes ``input_size`` square frames (default: the size the model was trained at);
    an export at another size is cached under its own name.
    """
    if weights.suffix == ".onnx":
        return weights
    model, version = load_model(weights, torch.device("cpu"))
    size = input_size or model.cfg.input_size
    name = version if size == model.cfg.input_size else f"{version}-{size}px"
    return cached_export(name, lambda out: export_onnx(model, version, out, size))


def load_network(
    path: Path, device: torch.device, runtime: str = "torch", input_size: int | None = None
) -> tuple[TruckNet | OnnxNetwork, str]:
    """The network and its version: eager from a ``.pt``, ONNX Runtime from a ``.onnx`` file.

    ``runtime="onnx"`` runs a ``.pt`` checkpoint through ONNX Runtime via its cached export at
    ``input_size``; the eager network takes any size that is a multiple of 32.
    """
    if runtime == "onnx" or path.suffix == ".onnx":
        net = OnnxNetwork(onnx_file(path, input_size), device)
        if input_size is not None and net.input_size != input_size:
            raise CheckpointError(
                f"{path} takes {net.input_size}x{net.input_size} input; input size "
                f"{input_size} needs the checkpoint (.pt) it was exported from"
            )
        return net, net.version
    return load_model(path, device)


def open_network(
    path: Path,
    device: torch.device,
    runtime: str = "torch",
    input_size: int | None = None,
    flip: bool = False,
) -> tuple[nn.Module, int, str]:
    """The network to run (mirror-averaged when ``flip``), the input side frames are resized to,
    and the version, tagged when frames are not run as the model was trained
    (``detector.input_size``, ``detector.flip``)."""
    net, version = load_network(path, device, runtime, input_size)
    size = input_size or (net.input_size if isinstance(net, OnnxNetwork) else net.cfg.input_size)
    version += inference_tag(net.cfg.input_size, size, flip)
    return (FlipAverage(net) if flip else net), size, version


def inference_tag(trained_size: int, input_size: int, flip: bool) -> str:
    """What the version string adds when frames are not run as the model was trained:
    ``@<size>`` for another input size, ``+flip`` for mirrored averaging (both change counts,
    so they make a new vintage)."""
    return (f"@{input_size}" if input_size != trained_size else "") + ("+flip" if flip else "")


class Detector:
    """The trained CNN, run in batches on CUDA when present, else on CPU."""

    def __init__(self, cfg: DetectorConfig) -> None:
        self.cfg = cfg
        self.device = pick_device(cfg.device)
        weights = Path(cfg.weights)
        if cfg.runtime == "torch" and weights.suffix == ".onnx":
            raise CheckpointError(f"{weights}: an ONNX file needs detector.runtime: onnx")
        self.network, self.input_size, self.version = open_network(
            weights, self.device, cfg.runtime, cfg.input_size, cfg.flip
        )
        if cfg.classifier is not None:  # the counted classes depend on it: part of the version
            if not cfg.classifier.is_file():
                raise CheckpointError(f"crop classifier not found: {cfg.classifier}")
            self.version = f"{self.version}+{model_version(cfg.classifier)}"
        if cfg.runtime == "onnx" and cfg.precision != "fp32":
            log.warning("precision %s applies to runtime torch only; ONNX runs fp32", cfg.precision)
        elif cfg.precision == "bf16" and not native_bf16(self.device):
            log.warning(
                "precision bf16 on %s, which has no native bf16 (AVX-512 BF16 or AMX): emulated, "
                "slower than fp32",
                self.device,
            )
        log.info("detector %s on %s (%s)", self.version, self.device, cfg.runtime)

    def predict(self, frames: Sequence[Frame]) -> list[Detections]:
        """Detect vehicles in each frame; boxes are in that frame's pixels."""
        if not frames:
            return []
        s = self.input_size
        images = [cv2.resize(f.image, (s, s), interpolation=cv2.INTER_AREA) for f in frames]
        nms = {
            "score_threshold": self.cfg.score_threshold,
            "nms_iou": self.cfg.nms_iou,
            "max_detections": self.cfg.max_detections,
            "class_agnostic": self.cfg.class_agnostic_nms,
        }
        if isinstance(self.network, OnnxNetwork):
            preds = self.network.predict(images, self.cfg.batch_size, **nms)
        else:
            amp = self.cfg.precision == "bf16" and self.cfg.runtime == "torch"
            preds = predict(
                self.network, images, self.device, batch_size=self.cfg.batch_size, amp=amp, **nms
            )
        out = []
        for frame, (boxes, scores, classes) in zip(frames, preds, strict=True):
            w, h = frame.size
            scale = np.array([w / s, h / s, w / s, h / s], np.float32)
            xyxy = np.clip(boxes * scale, 0, [w, h, w, h]).astype(np.float32)
            out.append(Detections(xyxy, scores.astype(np.float32), classes.astype(np.int64)))
        return out
