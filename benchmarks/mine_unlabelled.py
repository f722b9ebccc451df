"""Find vehicles the training labels leave out: confident boxes of trained models no label covers.

Runs one or several trained models (their output maps averaged, each frame and its mirror with
``--flip``) on the training frames and keeps every box, of any class, scoring at least
``--threshold`` that overlaps no labelled box: IoU below 0.1 with each, and less than half of it
inside any. Models trained on these frames were taught that such places are road, so a box
still scoring there is mostly a real vehicle the labels skipped: a distant truck, or one cut by
the frame's edge (``benchmarks/km39_unlabelled_trucks.csv`` lists the ones checked by eye on the
validation frames). The CSV it writes is what ``truckcount train --ignore-boxes`` reads.

    python benchmarks/mine_unlabelled.py ../shared/data/km39-cctv --weights A.pt [--weights B.pt]
        [--flip] [--threshold 0.3] --out runs/unlabelled.csv
"""

from __future__ import annotations

import argparse
import csv
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from ensemble_ap import MapAverage
from torch import nn
from torchvision.ops import box_iou

from truckcount.config import DEFAULT_WEIGHTS
from truckcount.detector import data as ds
from truckcount.detector.engine import predict
from truckcount.detector.infer import load_model
from truckcount.detector.tta import FlipAverage
from truckcount.detector.weights import pick_device
from truckcount.types import CLASSES

log = logging.getLogger("mine_unlabelled")


def uncovered(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> list[int]:
    """Indices of ``boxes`` (best score first, one per place) that no labelled box covers."""
    keep: list[int] = []
    for i in np.argsort(-scores):
        b = torch.from_numpy(boxes[i : i + 1])
        if keep and box_iou(b, torch.from_numpy(boxes[keep])).max() >= 0.5:
            continue  # the same vehicle under another class
        if len(labels):
            lab = torch.from_numpy(labels)
            x0, y0 = torch.maximum(b[:, 0], lab[:, 0]), torch.maximum(b[:, 1], lab[:, 1])
            x1, y1 = torch.minimum(b[:, 2], lab[:, 2]), torch.minimum(b[:, 3], lab[:, 3])
            inter = (x1 - x0).clamp(min=0) * (y1 - y0).clamp(min=0)
            area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
            if box_iou(b, lab).max() >= 0.1 or (inter / area).max() >= 0.5:
                continue
        keep.append(int(i))
    return keep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--weights", type=Path, action="append")
    parser.add_argument("--flip", action="store_true", help="also average each frame's mirror")
    parser.add_argument("--threshold", type=float, default=0.3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = pick_device("auto")
    models = [load_model(w, device)[0] for w in args.weights or [DEFAULT_WEIGHTS]]
    net: nn.Module = MapAverage(models)
    if args.flip:
        net = FlipAverage(net)
    size = models[0].cfg.input_size
    train = [s for s in ds.load_samples(args.data) if not ds.is_validation(s)]
    images = ds.cache_images(train, size)
    preds = predict(net, images, device, batch_size=16, score_threshold=args.threshold)
    found: Counter[str] = Counter()
    with args.out.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["label_file", "x0", "y0", "x1", "y1", "note"])
        for s, (boxes, scores, classes) in zip(train, preds, strict=True):
            boxes = (boxes / size).astype(np.float32).clip(0.0, 1.0)
            for i in uncovered(boxes, scores, s.boxes):
                name = CLASSES[int(classes[i])].value
                found[f"{s.sequence} {name}"] += 1
                out.writerow(
                    [s.image_path.stem, *(f"{v:.4f}" for v in boxes[i]), f"{name} {scores[i]:.2f}"]
                )
    log.info("%d boxes on %d training frames: %s", sum(found.values()), len(train), dict(found))


if __name__ == "__main__":
    main()
