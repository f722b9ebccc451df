"""CenterNet training targets and losses.

Each box becomes a peak of an elliptical Gaussian on its class heatmap at its centre cell
(stride 4), plus a log-size and a sub-cell offset regressed at that cell.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from truckcount.detector.model import STRIDE

GAUSSIAN_ALPHA = 0.54  # Gaussian spread relative to box size (TTFNet's choice)


def _draw_gaussian(hm: np.ndarray, cx: int, cy: int, sx: float, sy: float) -> None:
    h, w = hm.shape
    rx, ry = int(3 * sx) + 1, int(3 * sy) + 1
    x0, x1, y0, y1 = max(0, cx - rx), min(w, cx + rx + 1), max(0, cy - ry), min(h, cy + ry + 1)
    xs = np.arange(x0, x1, dtype=np.float32) - cx
    ys = np.arange(y0, y1, dtype=np.float32) - cy
    g = np.exp(-(xs[None, :] ** 2) / (2 * sx * sx) - (ys[:, None] ** 2) / (2 * sy * sy))
    np.maximum(hm[y0:y1, x0:x1], g, out=hm[y0:y1, x0:x1])


def build_targets(
    boxes: np.ndarray, classes: np.ndarray, input_size: int, num_classes: int
) -> dict[str, Tensor]:
    """Build dense targets from boxes in input pixels (N, 4) and class ids (N,)."""
    out = input_size // STRIDE
    heat = np.zeros((num_classes, out, out), np.float32)
    size = np.zeros((2, out, out), np.float32)
    offset = np.zeros((2, out, out), np.float32)
    mask = np.zeros((out, out), np.float32)
    cell = boxes / STRIDE
    w, h = cell[:, 2] - cell[:, 0], cell[:, 3] - cell[:, 1]
    order = np.argsort(-(w * h))  # small boxes drawn last so they win shared cells
    for i in order:
        if w[i] < 0.25 or h[i] < 0.25:
            continue
        cx, cy = (cell[i, 0] + cell[i, 2]) / 2, (cell[i, 1] + cell[i, 3]) / 2
        ix, iy = min(int(cx), out - 1), min(int(cy), out - 1)
        sx, sy = max(GAUSSIAN_ALPHA * w[i] / 6, 0.4), max(GAUSSIAN_ALPHA * h[i] / 6, 0.4)
        _draw_gaussian(heat[classes[i]], ix, iy, sx, sy)
        size[:, iy, ix] = np.log([w[i], h[i]])
        offset[:, iy, ix] = (cx - ix, cy - iy)
        mask[iy, ix] = 1.0
    return {
        "heatmap": torch.from_numpy(heat),
        "size": torch.from_numpy(size),
        "offset": torch.from_numpy(offset),
        "mask": torch.from_numpy(mask),
    }


def focal_loss(logits: Tensor, target: Tensor) -> Tensor:
    """CenterNet's penalty-reduced focal loss, normalised by the number of centres."""
    p = logits.float().sigmoid().clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    neg_weight = (1 - target).pow(4)
    pos_loss = (torch.log(p) * (1 - p).pow(2) * pos).sum()
    neg_loss = (torch.log(1 - p) * p.pow(2) * neg_weight * (1 - pos)).sum()
    return -(pos_loss + neg_loss) / pos.sum().clamp(min=1.0)


def _masked_l1(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    m = mask.unsqueeze(1)
    return (torch.abs(pred.float() - target) * m).sum() / (2 * m.sum()).clamp(min=1.0)


def detection_loss(out: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, Tensor]:
    """Return each loss term and their weighted sum under ``total``."""
    hm = focal_loss(out["heatmap"], targets["heatmap"])
    size = _masked_l1(out["size"], targets["size"], targets["mask"])
    off = _masked_l1(out["offset"], targets["offset"], targets["mask"])
    return {"total": hm + size + off, "heatmap": hm, "size": size, "offset": off}
