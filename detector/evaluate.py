"""Detection metrics: COCO-style AP50 and AP50-95 per class (torchmetrics, pycocotools backend),
per sequence and day/night, plus precision and recall at the deployed score threshold."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torchmetrics.detection import MeanAveragePrecision
from torchvision.ops import box_iou

from truckcount.detector.data import Sample
from truckcount.detector.engine import Prediction
from truckcount.types import CLASSES

log = logging.getLogger(__name__)


def prediction_dicts(preds: Sequence[Prediction]) -> list[dict[str, torch.Tensor]]:
    """Predictions as torchmetrics wants them."""
    return [
        {
            "boxes": torch.as_tensor(b, dtype=torch.float32),
            "scores": torch.as_tensor(s, dtype=torch.float32),
            "labels": torch.as_tensor(c, dtype=torch.int64),
        }
        for b, s, c in preds
    ]


def ap_per_class(
    preds: list[dict[str, torch.Tensor]],
    targets: list[dict[str, torch.Tensor]],
    iou_thresholds: list[float] | None,
) -> dict[str, float]:
    """COCO AP per class name and its mean (``iou_thresholds`` None: 0.5:0.95). A target may
    carry ``iscrowd`` to mark regions where a box is neither a hit nor a false box."""
    metric = MeanAveragePrecision(
        iou_thresholds=iou_thresholds, class_metrics=True, backend="pycocotools"
    )
    metric.update(preds, targets)
    res = metric.compute()
    present = [int(c) for c in torch.atleast_1d(res["classes"])]
    per_class = torch.atleast_1d(res["map_per_class"]).tolist()
    out = {CLASSES[c].value: round(float(v), 4) for c, v in zip(present, per_class, strict=True)}
    out["mean"] = round(float(res["map"]), 4)
    return out


def average_precision(
    preds: Sequence[Prediction], samples: Sequence[Sample], input_size: int
) -> dict[str, dict[str, float]]:
    """AP50 and AP50-95 per class name, plus their means, for boxes in input pixels."""
    p = prediction_dicts(preds)
    t = [
        {
            "boxes": torch.as_tensor(s.boxes * float(input_size), dtype=torch.float32),
            "labels": torch.as_tensor(s.classes, dtype=torch.int64),
        }
        for s in samples
    ]
    return {"ap50": ap_per_class(p, t, [0.5]), "ap50_95": ap_per_class(p, t, None)}


def precision_recall(
    preds: Sequence[Prediction],
    samples: Sequence[Sample],
    input_size: int,
    threshold: float,
    iou: float = 0.5,
) -> dict[str, dict[str, float]]:
    """Greedy one-to-one matching at ``threshold``: precision and recall per class."""
    stats = {c.value: [0, 0, 0] for c in CLASSES}  # tp, fp, fn
    for (boxes, scores, classes), s in zip(preds, samples, strict=True):
        for cid, cls in enumerate(CLASSES):
            pb = torch.as_tensor(boxes[(scores >= threshold) & (classes == cid)])
            tb = torch.as_tensor(s.boxes[s.classes == cid] * input_size)
            tp = _greedy_matches(pb, tb, iou)
            st = stats[cls.value]
            st[0], st[1], st[2] = st[0] + tp, st[1] + len(pb) - tp, st[2] + len(tb) - tp
    return {
        name: {
            "precision": round(tp / max(tp + fp, 1), 4),
            "recall": round(tp / max(tp + fn, 1), 4),
            "support": tp + fn,
        }
        for name, (tp, fp, fn) in stats.items()
    }


def _greedy_matches(pred: torch.Tensor, truth: torch.Tensor, iou: float) -> int:
    if len(pred) == 0 or len(truth) == 0:
        return 0
    ious = box_iou(pred.float(), truth.float()).numpy()
    matched = 0
    while ious.size and ious.max() >= iou:
        i, j = np.unravel_index(ious.argmax(), ious.shape)
        ious[i, :], ious[:, j] = -1, -1
        matched += 1
    return matched


def group_samples(samples: Sequence[Sample]) -> dict[str, list[int]]:
    """Indices of samples per sequence, per day/night, and overall."""
    groups: dict[str, list[int]] = {"all": list(range(len(samples)))}
    for i, s in enumerate(samples):
        groups.setdefault(f"sequence:{s.sequence}", []).append(i)
        groups.setdefault("night" if s.night else "day", []).append(i)
    return groups


def evaluate_predictions(
    preds: Sequence[Prediction], samples: Sequence[Sample], input_size: int, threshold: float
) -> dict[str, object]:
    """Every figure of the evaluation report, grouped."""
    report: dict[str, object] = {"threshold": threshold, "images": len(samples)}
    for name, idx in group_samples(samples).items():
        sub_p, sub_s = [preds[i] for i in idx], [samples[i] for i in idx]
        report[name] = {
            "images": len(idx),
            **average_precision(sub_p, sub_s, input_size),
            "at_threshold": precision_recall(sub_p, sub_s, input_size, threshold),
        }
    return report
