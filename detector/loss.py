"""CenterNet training targets and losses.

Each box becomes a peak of an elliptical Gaussian on its class heatmap at its centre cell
(stride 4), plus a log-size and a sub-cell offset regressed at that cell. Besides the centre, the
cells of the box's Gaussian core also learn the box (TTFNet's idea): each predicts the whole box
from where it sits (its own offset to the centre and the size), scored by GIoU against the
labelled box and weighted by the Gaussian, so a peak one cell off still yields a tight box.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import generalized_box_iou_loss

from truckcount.detector.data import AMBIGUOUS
from truckcount.detector.model import STRIDE

GAUSSIAN_ALPHA = 0.54  # Gaussian spread relative to box size (TTFNet's choice)
BOX_LOSS_WEIGHT = 2.0  # weight of the dense GIoU term against the heatmap's focal loss
# heatmap peak of an ambiguous box on each class it may be: just under 1, so it is never a centre
# to learn, and the focal loss's (1 - target)^4 frees the network's score there for that class
AMBIGUOUS_PEAK = 0.99


Window = tuple[slice, slice]


def _patch(
    ix: int, iy: int, sigma: tuple[float, float], reach: tuple[int, int], shape: tuple[int, int]
) -> tuple[Window, np.ndarray]:
    """The window of ``reach`` cells around (ix, iy), clipped to ``shape``, and a Gaussian of
    spread ``sigma`` over it, 1 at the centre."""
    (sx, sy), (rx, ry), (h, w) = sigma, reach, shape
    x0, x1, y0, y1 = max(0, ix - rx), min(w, ix + rx + 1), max(0, iy - ry), min(h, iy + ry + 1)
    xs = np.arange(x0, x1, dtype=np.float32) - ix
    ys = np.arange(y0, y1, dtype=np.float32) - iy
    g = np.exp(-(xs[None, :] ** 2) / (2 * sx * sx) - (ys[:, None] ** 2) / (2 * sy * sy))
    return (slice(y0, y1), slice(x0, x1)), g


def build_targets(
    boxes: np.ndarray,
    classes: np.ndarray,
    input_size: int,
    num_classes: int,
    ambiguous: Sequence[int] = (),
) -> dict[str, Tensor]:
    """Build dense targets from boxes in input pixels (N, 4) and class ids (N,).

    A box of class ``AMBIGUOUS`` is taught as neither of the classes in ``ambiguous`` (nor
    as background for them): it gets an ``AMBIGUOUS_PEAK`` on each of their heatmaps, and its
    size and offset are learned like any box's."""
    out = input_size // STRIDE
    heat = np.zeros((num_classes, out, out), np.float32)
    size = np.zeros((2, out, out), np.float32)
    offset = np.zeros((2, out, out), np.float32)
    mask = np.zeros((out, out), np.float32)
    box = np.zeros((4, out, out), np.float32)
    box_weight = np.zeros((out, out), np.float32)
    cell = boxes / STRIDE
    w, h = cell[:, 2] - cell[:, 0], cell[:, 3] - cell[:, 1]
    order = np.argsort(-(w * h))  # small boxes drawn last so they win shared cells
    for i in order:
        if w[i] < 0.25 or h[i] < 0.25:
            continue
        cx, cy = (cell[i, 0] + cell[i, 2]) / 2, (cell[i, 1] + cell[i, 3]) / 2
        ix, iy = min(int(cx), out - 1), min(int(cy), out - 1)
        sx, sy = max(GAUSSIAN_ALPHA * w[i] / 6, 0.4), max(GAUSSIAN_ALPHA * h[i] / 6, 0.4)
        reach = (int(3 * sx) + 1, int(3 * sy) + 1)
        window, g = _patch(ix, iy, (sx, sy), reach, (out, out))
        if classes[i] == AMBIGUOUS:
            for c in ambiguous:
                np.maximum(heat[c][window], AMBIGUOUS_PEAK * g, out=heat[c][window])
        else:
            np.maximum(heat[classes[i]][window], g, out=heat[classes[i]][window])
        size[:, iy, ix] = np.log([w[i], h[i]])
        offset[:, iy, ix] = (cx - ix, cy - iy)
        mask[iy, ix] = 1.0
        # the box's core (the central GAUSSIAN_ALPHA of it) learns the whole box, weighted by the
        # Gaussian and normalised to sum to log(1 + area): large boxes weigh more, not linearly
        core = (int(GAUSSIAN_ALPHA * w[i] / 2), int(GAUSSIAN_ALPHA * h[i] / 2))
        region, weight = _patch(ix, iy, (sx, sy), core, (out, out))
        box[(slice(None), *region)] = cell[i][:, None, None]
        box_weight[region] = weight * (np.log1p(w[i] * h[i]) / weight.sum())
    return {
        "heatmap": torch.from_numpy(heat),
        "size": torch.from_numpy(size),
        "offset": torch.from_numpy(offset),
        "mask": torch.from_numpy(mask),
        "box": torch.from_numpy(box),
        "box_weight": torch.from_numpy(box_weight),
    }


def focal_loss(logits: Tensor, target: Tensor, pos_weight: Sequence[float] | None = None) -> Tensor:
    """CenterNet's penalty-reduced focal loss, normalised by the number of centres.

    ``pos_weight`` (one per class) scales each class's centre term: a rarer class that the
    network confuses with a common one (small trucks taken for cars) can be made to count more.
    """
    p = logits.float().sigmoid().clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    pos_scale = pos
    if pos_weight is not None:
        weights = torch.tensor(pos_weight, dtype=torch.float32, device=logits.device)
        pos_scale = pos * weights.view(1, -1, 1, 1)
    neg_weight = (1 - target).pow(4)
    pos_loss = (torch.log(p) * (1 - p).pow(2) * pos_scale).sum()
    neg_loss = (torch.log(1 - p) * p.pow(2) * neg_weight * (1 - pos)).sum()
    return -(pos_loss + neg_loss) / pos.sum().clamp(min=1.0)


def _masked_l1(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    m = mask.unsqueeze(1)
    return (torch.abs(pred.float() - target) * m).sum() / (2 * m.sum()).clamp(min=1.0)


def dense_box_loss(out: dict[str, Tensor], box: Tensor, weight: Tensor) -> Tensor:
    """Weighted GIoU loss of the box each weighted cell predicts (cell + offset, exp(size)),
    in output cells, against the labelled box it belongs to."""
    h, w = box.shape[-2:]
    sel = weight > 0
    if not bool(sel.any()):
        return box.new_zeros(())
    ys, xs = torch.meshgrid(
        torch.arange(h, device=box.device, dtype=torch.float32),
        torch.arange(w, device=box.device, dtype=torch.float32),
        indexing="ij",
    )
    off, size = out["offset"].float(), out["size"].float().clamp(max=8).exp()
    cx, cy = xs + off[:, 0], ys + off[:, 1]
    pred = torch.stack(
        [cx - size[:, 0] / 2, cy - size[:, 1] / 2, cx + size[:, 0] / 2, cy + size[:, 1] / 2], 1
    )
    pred_sel = pred.permute(0, 2, 3, 1)[sel]
    target_sel = box.permute(0, 2, 3, 1)[sel]
    giou = generalized_box_iou_loss(pred_sel, target_sel, reduction="none")
    wsel = weight[sel]
    return (giou * wsel).sum() / wsel.sum().clamp(min=1e-6)


def detection_loss(
    out: dict[str, Tensor],
    targets: dict[str, Tensor],
    class_weights: Sequence[float] | None = None,
) -> dict[str, Tensor]:
    """Return each loss term and their weighted sum under ``total``; ``class_weights`` as
    ``focal_loss``'s ``pos_weight``."""
    hm = focal_loss(out["heatmap"], targets["heatmap"], class_weights)
    size = _masked_l1(out["size"], targets["size"], targets["mask"])
    off = _masked_l1(out["offset"], targets["offset"], targets["mask"])
    box = dense_box_loss(out, targets["box"], targets["box_weight"])
    total = hm + size + off + BOX_LOSS_WEIGHT * box
    return {"total": total, "heatmap": hm, "size": size, "offset": off, "box": box}
