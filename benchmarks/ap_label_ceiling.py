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
import csv
import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torchmetrics.detection import MeanAveragePrecision
from torchvision.ops import box_iou

from truckcount.config import DEFAULT_WEIGHTS
from truckcount.detector import data as ds
from truckcount.detector.engine import Prediction, predict
from truckcount.detector.infer import open_network
from truckcount.detector.weights import pick_device
from truckcount.types import VehicleClass

log = logging.getLogger("ap_label_ceiling")
TRUCK = VehicleClass.TRUCK.id


def source_targets(
    root: Path, samples: list[ds.Sample], size: int, ignore: set[str]
) -> list[dict[str, torch.Tensor]]:
    """Per sample: boxes in input pixels, merged class ids, and ``iscrowd`` for ignored sources."""
    names = ds.read_class_names(root)
    known = {i: i for i, n in names.items() if n in ds.MERGE}
    out = []
    for s in samples:
        label = s.image_path.parent.parent / "labels" / f"{s.image_path.stem}.txt"
        boxes, src = ds.parse_label_file(label, known)
        out.append(
            {
                "boxes": torch.from_numpy(boxes * size),
                "labels": torch.tensor([ds.MERGE[names[int(i)]].id for i in src], dtype=torch.long),
                "iscrowd": torch.tensor([int(names[int(i)] in ignore) for i in src]),
            }
        )
    return out


def read_unlabelled(path: Path) -> dict[str, list[list[float]]]:
    """Boxes of ``path`` (``label_file,x0,y0,x1,y1``, normalised) per label file stem."""
    boxes: dict[str, list[list[float]]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            box = [float(row[k]) for k in ("x0", "y0", "x1", "y1")]
            boxes.setdefault(row["label_file"], []).append(box)
    return boxes


def with_crowd(
    targets: list[dict[str, torch.Tensor]],
    samples: list[ds.Sample],
    extra: dict[str, list[list[float]]],
    size: int,
) -> list[dict[str, torch.Tensor]]:
    """``targets`` with the ``extra`` boxes of each sample's label file added as crowd trucks."""
    out = []
    for t, s in zip(targets, samples, strict=True):
        boxes = torch.tensor(extra.get(s.image_path.stem, []), dtype=torch.float32).reshape(-1, 4)
        n = len(boxes)
        out.append(
            {
                "boxes": torch.cat([t["boxes"], boxes * size]),
                "labels": torch.cat([t["labels"], torch.full((n,), TRUCK, dtype=torch.long)]),
                "iscrowd": torch.cat([t["iscrowd"], torch.ones(n, dtype=torch.long)]),
            }
        )
    return out


def truck_ap50(preds: list[Prediction], targets: list[dict[str, torch.Tensor]]) -> float:
    metric = MeanAveragePrecision(iou_thresholds=[0.5], class_metrics=True, backend="pycocotools")
    metric.update(
        [
            {
                "boxes": torch.from_numpy(b),
                "scores": torch.from_numpy(s),
                "labels": torch.from_numpy(c),
            }
            for b, s, c in preds
        ],
        targets,
    )
    res = metric.compute()
    classes = torch.atleast_1d(res["classes"]).tolist()
    return round(float(torch.atleast_1d(res["map_per_class"])[classes.index(TRUCK)]), 4)


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
    plain = source_targets(args.data, val, size, set())
    ignored = source_targets(args.data, val, size, ignore)
    extra = read_unlabelled(args.unlabelled) if args.unlabelled else {}
    completed = with_crowd(plain, val, extra, size)
    both = with_crowd(ignored, val, extra, size)
    report: dict[str, object] = {"model_version": version, "ignore": sorted(ignore)}
    for seq in sorted({s.sequence for s in val}):
        idx = [i for i, s in enumerate(val) if s.sequence == seq]
        p = [preds[i] for i in idx]
        figures = {
            "truck_ap50": truck_ap50(p, [plain[i] for i in idx]),
            "truck_ap50_ignoring": truck_ap50(p, [ignored[i] for i in idx]),
            "ignored_boxes": int(sum(int(ignored[i]["iscrowd"].sum()) for i in idx)),
            "false_truck_boxes": false_truck_kinds(p, [plain[i] for i in idx], args.threshold),
        }
        if extra:
            figures["unlabelled_boxes"] = sum(
                len(extra.get(val[i].image_path.stem, [])) for i in idx
            )
            figures["truck_ap50_unlabelled_as_crowd"] = truck_ap50(p, [completed[i] for i in idx])
            figures["truck_ap50_both"] = truck_ap50(p, [both[i] for i in idx])
        report[seq] = figures
    log.info("%s", json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
