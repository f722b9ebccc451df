"""How the detector finds each labelled kind and size of truck: as a truck, another class, or not.

The km39 labels name several kinds of truck (``truck-s``, ``truck-m``, ``big truck`` ...) that the
detector learns as one class. This splits the validation frames' truck boxes by their source
class, and again by their height as a share of the frame's, and reports, at the deployed score,
the share found as a truck (a truck box with IoU >= 0.5), found only as another class (a bus or
car box there instead), or missed. The height split shows how much of the recall lost is lost on
distant, small trucks, which a larger input size reaches.

    python benchmarks/truck_subclasses.py ../shared/data/km39-cctv [--weights W] [--threshold 0.3]
        [--input-size N]
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import torch
from torchvision.ops import box_iou

from truckcount.config import DEFAULT_WEIGHTS
from truckcount.detector import data as ds
from truckcount.detector.engine import predict
from truckcount.detector.infer import load_model
from truckcount.detector.weights import pick_device
from truckcount.types import VehicleClass

log = logging.getLogger("truck_subclasses")
TRUCK = list(VehicleClass).index(VehicleClass.TRUCK)
HEIGHT_EDGES = (0.05, 0.1, 0.2)  # box height / frame height
OUTCOMES = ("truck", "other", "miss")


def height_bin(box: np.ndarray) -> str:
    """The height class of a normalised xyxy box, e.g. ``h 0.05-0.1``."""
    h = float(box[3] - box[1])
    lower = [e for e in HEIGHT_EDGES if e <= h]
    upper = [e for e in HEIGHT_EDGES if e > h]
    if not lower:
        return f"h < {HEIGHT_EDGES[0]}"
    if not upper:
        return f"h >= {HEIGHT_EDGES[-1]}"
    return f"h {lower[-1]}-{upper[0]}"


def truck_labels(sample: ds.Sample, names: dict[int, str]) -> list[tuple[str, np.ndarray]]:
    """The sample's truck boxes (normalised xyxy) with their source class names."""
    boxes, sources = ds.source_labels(sample, names)
    return [
        (n, b) for n, b in zip(sources, boxes, strict=True) if ds.MERGE[n] is VehicleClass.TRUCK
    ]


def shares(counts: Counter[tuple[str, str]]) -> dict[str, dict[str, float]]:
    """Per group: its number of boxes and the share of each outcome."""
    report = {}
    for name in sorted({n for n, _ in counts}):
        n = sum(counts[(name, o)] for o in OUTCOMES)
        report[name] = {"boxes": n} | {o: round(counts[(name, o)] / n, 3) for o in OUTCOMES}
    return report


def tally(
    root: Path, weights: Path, threshold: float, input_size: int | None = None
) -> dict[str, dict[str, dict[str, float]]]:
    names = ds.read_class_names(root)
    _, val = ds.split(ds.load_samples(root))
    device = pick_device("auto")
    model, _ = load_model(weights, device)
    size = input_size or model.cfg.input_size
    images = [
        cv2.resize(ds.read_image(s.image_path), (size, size), interpolation=cv2.INTER_AREA)
        for s in val
    ]
    preds = predict(model, images, device, batch_size=8, score_threshold=threshold)
    by_class: Counter[tuple[str, str]] = Counter()
    by_height: Counter[tuple[str, str]] = Counter()
    for sample, (boxes, scores, classes) in zip(val, preds, strict=True):
        truth = truck_labels(sample, names)
        if not truth:
            continue
        gt = torch.from_numpy(np.stack([b for _, b in truth])) * size
        iou = box_iou(gt, torch.from_numpy(boxes)).numpy() if len(boxes) else np.zeros((len(gt), 0))
        kept = scores >= threshold
        for (name, box), overlaps in zip(truth, iou, strict=True):
            hit = (overlaps >= 0.5) & kept
            outcome = (
                "truck" if (hit & (classes == TRUCK)).any() else "other" if hit.any() else "miss"
            )
            by_class[(name, outcome)] += 1
            by_height[(height_bin(box), outcome)] += 1
    return {"by_class": shares(by_class), "by_height": shares(by_height)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--threshold", type=float, default=0.3, help="deployed truck score")
    parser.add_argument("--input-size", type=int, help="network input side")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = tally(args.data, args.weights, args.threshold, args.input_size)
    head = {"weights": str(args.weights), "threshold": args.threshold}
    head["input_size"] = args.input_size
    log.info("%s", json.dumps(head | {"validation": report}, indent=1))


if __name__ == "__main__":
    main()
