"""How much of the truck AP lost on the validation frames is lost on boxes the labels disagree on.

The km39 sequences do not agree on what a truck is: the validation sequence siang labels open-bed
pickups and small box trucks ``truck-s-``, the training sequences mostly label them ``car``
(docs/counting.md, "Labels that disagree between sequences"). This reports truck AP50 per
validation sequence twice: as labelled, and with the boxes of the ``--ignore`` source classes
made COCO "crowd" regions (a truck box on one is neither a hit nor a false box, and missing one
is not a miss). The gap between the two is the AP this model loses on those boxes. With
``--unlabelled CSV`` (``label_file,x0,y0,x1,y1``, normalised boxes of vehicles the label files
leave out, such as ``benchmarks/km39_unlabelled_trucks.csv``) a third figure also makes those
boxes crowd truck regions, so a detector is not charged for finding them. It also sorts
the truck boxes scoring at least ``--threshold`` that match no labelled truck by what lies under
them: a labelled car, a bus, a truck already matched by a higher-scoring box, or nothing.

    python benchmarks/ap_label_ceiling.py ../shared/data/km39-cctv [--weights W]
        [--input-size N] [--flip] [--ignore truck-s-] [--threshold 0.3]
        [--unlabelled benchmarks/km39_unlabelled_trucks.csv]
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import box_iou

from truckcount.config import DEFAULT_WEIGHTS
from truckcount.detector import data as ds
from truckcount.detector.engine import Prediction, predict
from truckcount.detector.evaluate import ap_per_class, prediction_dicts
from truckcount.detector.ignore_boxes import read_ignore_boxes
from truckcount.detector.infer import open_network
from truckcount.detector.weights import pick_device
from truckcount.types import VehicleClass

log = logging.getLogger("ap_label_ceiling")
TRUCK = VehicleClass.TRUCK.id


def targets(
    root: Path,
    samples: list[ds.Sample],
    size: int,
    ignore: set[str],
    unlabelled: dict[str, np.ndarray],
) -> list[dict[str, torch.Tensor]]:
    """Per sample: boxes in input pixels and merged class ids, with ``iscrowd`` set on boxes of
    the ``ignore`` source classes and on the ``unlabelled`` boxes, added as crowd trucks."""
    names = ds.read_class_names(root)
    out = []
    for s in samples:
        boxes, sources = ds.source_labels(s, names)
        extra = unlabelled.get(s.image_path.stem, np.zeros((0, 4), np.float32))
        labels = [ds.MERGE[n].id for n in sources] + [TRUCK] * len(extra)
        crowd = [int(n in ignore) for n in sources] + [1] * len(extra)
        out.append(
            {
                "boxes": torch.from_numpy(np.concatenate([boxes, extra]) * size),
                "labels": torch.tensor(labels, dtype=torch.long),
                "iscrowd": torch.tensor(crowd, dtype=torch.long),
            }
        )
    return out


def truck_ap50(preds: list[Prediction], truth: list[dict[str, torch.Tensor]]) -> float:
    return ap_per_class(prediction_dicts(preds), truth, [0.5])[VehicleClass.TRUCK.value]


def false_truck_kinds(
    preds: list[Prediction], targets: list[dict[str, torch.Tensor]], threshold: float
) -> dict[str, int]:
    """Truck boxes >= ``threshold`` matching no labelled truck (IoU 0.5, greedy by score), by
    what they overlap most: a labelled car, a bus, an already matched truck, or nothing."""
    kinds: Counter[str] = Counter()
    for (boxes, scores, classes), t in zip(preds, targets, strict=True):
        keep = (classes == TRUCK) & (scores >= threshold)
        order = np.argsort(-scores[keep])
        pb = torch.from_numpy(boxes[keep][order])
        if len(pb) == 0:
            continue
        iou = box_iou(pb, t["boxes"]).numpy() if len(t["boxes"]) else np.zeros((len(pb), 0))
        labels = t["labels"].numpy()
        used: set[int] = set()
        for row in iou:
            trucks = [j for j in np.flatnonzero((row >= 0.5) & (labels == TRUCK)) if j not in used]
            if trucks:
                used.add(int(trucks[int(np.argmax(row[trucks]))]))
                continue
            j = int(np.argmax(row)) if row.size else -1
            if j < 0 or row[j] < 0.5:
                kinds["nothing labelled"] += 1
            else:
                kinds[
                    {TRUCK: "matched truck", VehicleClass.BUS.id: "bus"}.get(labels[j], "car")
                ] += 1
    return dict(kinds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--input-size", type=int)
    parser.add_argument("--flip", action="store_true")
    parser.add_argument("--ignore", action="append", help="source class to ignore (repeatable)")
    parser.add_argument("--threshold", type=float, default=0.3, help="deployed truck score")
    parser.add_argument("--unlabelled", type=Path, help="CSV of vehicles the labels leave out")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ignore = set(args.ignore or ["truck-s-"])
    device = pick_device("auto")
    net, size, version = open_network(
        args.weights, device, input_size=args.input_size, flip=args.flip
    )
    val = [s for s in ds.load_samples(args.data) if ds.is_validation(s)]
    preds = predict(net, ds.cache_images(val, size), device, batch_size=16, score_threshold=0.01)
    extra = read_ignore_boxes(args.unlabelled) if args.unlabelled else {}
    variants = {
        "truck_ap50": targets(args.data, val, size, set(), {}),
        "truck_ap50_ignoring": targets(args.data, val, size, ignore, {}),
    }
    if extra:
        variants["truck_ap50_unlabelled_as_crowd"] = targets(args.data, val, size, set(), extra)
        variants["truck_ap50_both"] = targets(args.data, val, size, ignore, extra)
    plain = variants["truck_ap50"]
    report: dict[str, object] = {"model_version": version, "ignore": sorted(ignore)}
    for seq in sorted({s.sequence for s in val}):
        idx = [i for i, s in enumerate(val) if s.sequence == seq]
        p = [preds[i] for i in idx]
        figures: dict[str, object] = {
            name: truck_ap50(p, [t[i] for i in idx]) for name, t in variants.items()
        }
        figures["ignored_boxes"] = int(
            sum(int(variants["truck_ap50_ignoring"][i]["iscrowd"].sum()) for i in idx)
        )
        figures["unlabelled_boxes"] = sum(len(extra.get(val[i].image_path.stem, [])) for i in idx)
        figures["false_truck_boxes"] = false_truck_kinds(p, [plain[i] for i in idx], args.threshold)
        report[seq] = figures
    log.info("%s", json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
