"""``truckcount eval detect``: evaluate a model on a YOLO-format folder and format the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from truckcount.config import DetectorConfig, TrackerConfig
from truckcount.detector.data import Sample, cache_images, is_validation, load_samples
from truckcount.detector.engine import predict
from truckcount.detector.evaluate import evaluate_predictions
from truckcount.detector.infer import open_network
from truckcount.detector.label_fixes import read_optional
from truckcount.detector.weights import pick_device


def evaluate_folder(
    data: Path,
    weights: Path | None = None,
    threshold: float | None = None,
    split: str = "all",
    label_fixes: Path | None = None,
    input_size: int | None = None,
    flip: bool = False,
) -> dict[str, Any]:
    """Run the model on every labelled image of ``data`` and compute the detection report.

    ``threshold`` defaults to the tracker's first-stage score: the score a box needs to count.
    ``split`` keeps ``all`` frames, or only the project's time-split ``val`` or ``train`` frames.
    ``label_fixes`` names a CSV of class corrections applied to the labels first.
    ``input_size`` and ``flip`` run the network as ``detector.input_size`` and ``detector.flip``.
    """
    if split not in ("all", "val", "train"):
        raise ValueError(f"split {split!r}: expected all, val or train")
    samples = load_samples(data, fixes=read_optional(label_fixes))
    if split != "all":
        samples = [s for s in samples if is_validation(s) == (split == "val")]
    if not samples:
        raise ValueError(f"{data}: no labelled frames in split {split!r}")
    device = pick_device("auto")
    weights = weights or DetectorConfig().weights
    net, size, version = open_network(weights, device, input_size=input_size, flip=flip)
    report = evaluate_network(net, size, samples, device, threshold)
    return {"model_version": version, "data": str(data), "split": split, **report}


def evaluate_network(
    net: nn.Module,
    size: int,
    samples: list[Sample],
    device: torch.device,
    threshold: float | None = None,
) -> dict[str, Any]:
    """The detection report of ``net`` (input side ``size``) on ``samples``, P/R at ``threshold``
    (default: the tracker's first-stage score)."""
    threshold = TrackerConfig().high_threshold if threshold is None else threshold
    preds = predict(net, cache_images(samples, size), device, batch_size=16, score_threshold=0.01)
    return evaluate_predictions(preds, samples, size, threshold)


def format_report(report: dict[str, Any]) -> str:
    """A plain-text table: one row per group, AP50 / AP50-95 per class and P/R of trucks."""
    classes = ("truck", "bus", "car")
    head = f"{'group':34} {'images':>6} " + " ".join(f"{c + ' AP50':>10}" for c in classes)
    head += f" {'truck AP50-95':>13} {'truck P':>8} {'truck R':>8}"
    rows = [f"model {report['model_version']}, P/R at score {report['threshold']}", head]
    for name, g in report.items():
        if not isinstance(g, dict) or "ap50" not in g:
            continue
        ap = " ".join(f"{_fmt(g['ap50'].get(c)):>10}" for c in classes)
        pr = g["at_threshold"]["truck"]
        rows.append(
            f"{name:34} {g['images']:>6} {ap} {_fmt(g['ap50_95'].get('truck')):>13} "
            f"{pr['precision']:>8.3f} {pr['recall']:>8.3f}"
        )
    return "\n".join(rows)


def _fmt(v: float | None) -> str:
    return "-" if v is None or v < 0 else f"{v:.3f}"
