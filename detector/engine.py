"""Training and prediction loops: one epoch of training, batched prediction on cached images."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from truckcount.detector.augment import Image, to_tensor
from truckcount.detector.loss import detection_loss
from truckcount.detector.model import decode

log = logging.getLogger(__name__)

Prediction = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes xyxy (input px), scores, class ids


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast on CPU and GPU when enabled; a no-op otherwise."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader[tuple[Tensor, dict[str, Tensor]]],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
    *,
    amp: bool,
    epoch: int,
    ema: torch.optim.swa_utils.AveragedModel | None = None,
    class_weights: Sequence[float] | None = None,
) -> dict[str, float]:
    """Run one epoch, updating ``ema`` after each step; return the mean of each loss term.

    ``class_weights``: per-class weight of the heatmap centres (``loss.focal_loss``)."""
    model.train()
    sums: dict[str, float] = {}
    bar = tqdm(loader, desc=f"epoch {epoch}", leave=False, dynamic_ncols=True)
    for step, (images, targets) in enumerate(bar, start=1):
        images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        targets = {k: v.to(device, non_blocking=True) for k, v in targets.items()}
        with autocast(device, amp):
            out = model(images)
        losses = detection_loss(out, targets, class_weights)
        if not math.isfinite(losses["total"].item()):
            raise FloatingPointError(
                f"loss is {losses['total'].item()} at epoch {epoch} step {step}"
            )
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + v.item()
        bar.set_postfix(loss=f"{sums['total'] / step:.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
    return {k: v / max(len(loader), 1) for k, v in sums.items()}


def _batches(images: Sequence[Image], batch_size: int) -> Iterator[Sequence[Image]]:
    for i in range(0, len(images), batch_size):
        yield images[i : i + batch_size]


@torch.inference_mode()
def predict(
    model: nn.Module,
    images: Sequence[Image],
    device: torch.device,
    *,
    batch_size: int = 16,
    amp: bool = False,
    score_threshold: float = 0.05,
    nms_iou: float = 0.6,
    max_detections: int = 100,
    class_agnostic: bool = False,
) -> list[Prediction]:
    """Predict boxes on images already resized to the model's input size."""
    model.eval()
    results: list[Prediction] = []
    for chunk in _batches(images, batch_size):
        x = to_tensor(chunk, device)
        with autocast(device, amp):
            out = model(x)
        decoded = decode(
            out,
            score_threshold=score_threshold,
            nms_iou=nms_iou,
            max_detections=max_detections,
            class_agnostic=class_agnostic,
        )
        results += _to_host(decoded)
    return results


def _to_host(decoded: Sequence[tuple[Tensor, Tensor, Tensor]]) -> list[Prediction]:
    """Per-image results as numpy arrays, copied from the device once per field, not per image."""
    counts = [len(scores) for _, scores, _ in decoded]
    fields = [torch.cat([d[i] for d in decoded]).cpu().numpy() for i in range(3)]
    split = np.cumsum(counts)[:-1]
    boxes, scores, classes = (np.split(f, split) for f in fields)
    return list(zip(boxes, scores, classes, strict=True))
