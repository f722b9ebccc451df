"""Review the labelled vehicles of one class by eye, and write class fixes for those that are wrong.

Usage:
    python benchmarks/label_review.py DATA --label car --out review/
        numbered grids (review/<label>-NN.png) of every labelled vehicle of that source class
        on the training frames: boxes linked into vehicles as ``eval counts`` links them, each
        shown by its largest box with some surroundings;
    python benchmarks/label_review.py DATA --label car --fix 0,2,7 --to truck-s- --note pickup
        prints the fixes-file rows (``detector/label_fixes.py``) that give every box of those
        vehicles, still labelled ``--label``, the class ``--to``.

Numbering is deterministic for a given folder and options. Only training frames are listed: the
validation frames are what models are judged on and keep their labels.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from truckcount.aggregator.groundtruth import LabelledFrame, link_tracks
from truckcount.detector import data as ds

log = logging.getLogger("label_review")
CELL, COLUMNS, PER_PAGE = 96, 10, 100


@dataclass(frozen=True)
class Box:
    image: Path
    stem: str
    line: int  # 1-based line of the label file
    source_class: str
    xyxy: tuple[float, float, float, float]  # normalised

    @property
    def area(self) -> float:
        return (self.xyxy[2] - self.xyxy[0]) * (self.xyxy[3] - self.xyxy[1])


def _label_lines(root: Path, stem: str, names: dict[int, str]) -> list[tuple[int, str]]:
    text = (root / "labels" / f"{stem}.txt").read_text().splitlines()
    return [(n, names[int(t.split()[0])]) for n, t in enumerate(text, 1) if t.split()]


def vehicles(root: Path, label: str, min_frames: int, min_width: float) -> list[list[Box]]:
    """Linked vehicles on the training frames whose boxes are mostly of source class ``label``."""
    names = ds.read_class_names(root)
    train, _ = ds.split(ds.load_samples(root))
    found: list[list[Box]] = []
    for seq in dict.fromkeys(s.sequence for s in train):
        frames = [s for s in train if s.sequence == seq]
        ids = link_tracks([LabelledFrame(s.index, s.boxes, s.classes) for s in frames])
        tracks: dict[int, list[Box]] = {}
        for s, tid in zip(frames, ids, strict=True):
            lines = _label_lines(root, s.image_path.stem, names)
            for (line, name), box, t in zip(lines, s.boxes, tid, strict=True):
                xyxy = (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
                box_ = Box(s.image_path, s.image_path.stem, line, name, xyxy)
                tracks.setdefault(int(t), []).append(box_)
        for boxes in tracks.values():
            top = Counter(b.source_class for b in boxes).most_common(1)[0][0]
            big = max(boxes, key=lambda b: b.area)
            if top == label and len(boxes) >= min_frames and big.xyxy[2] - big.xyxy[0] >= min_width:
                found.append(boxes)
    return found


def _tile(boxes: list[Box], number: int) -> np.ndarray:
    big = max(boxes, key=lambda b: b.area)
    img = ds.read_image(big.image)
    h, w = img.shape[:2]
    b = np.array(big.xyxy) * [w, h, w, h]
    m = 0.15 * (b[2:] - b[:2])
    x1, y1 = np.maximum(b[:2] - m, 0).astype(int)
    x2, y2 = np.minimum(b[2:] + m, [w, h]).astype(int)
    tile = np.ascontiguousarray(cv2.resize(img[y1:y2, x1:x2], (CELL, CELL)))
    cv2.putText(tile, str(number), (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 255, 255), 1)
    return tile


def write_grids(found: list[list[Box]], label: str, out: Path) -> list[Path]:
    """Numbered grids of the vehicles, ``PER_PAGE`` to an image."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for page in range(0, len(found), PER_PAGE):
        tiles = [_tile(v, page + k) for k, v in enumerate(found[page : page + PER_PAGE])]
        tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % COLUMNS)
        rows = [np.hstack(tiles[i : i + COLUMNS]) for i in range(0, len(tiles), COLUMNS)]
        path = out / f"{label.strip('-').replace(' ', '_')}-{page // PER_PAGE:02d}.png"
        cv2.imwrite(str(path), np.vstack(rows))
        written.append(path)
    return written


def fix_rows(found: list[list[Box]], numbers: list[int], label: str, to: str, note: str) -> list:
    """Fixes-file rows giving class ``to`` to the boxes of the numbered vehicles still ``label``."""
    rows = []
    for n in numbers:
        if not 0 <= n < len(found):
            raise SystemExit(f"vehicle {n} does not exist (0-{len(found) - 1})")
        for b in found[n]:
            if b.source_class == label:
                rows.append([b.stem, b.line, label, to, f"{note}, vehicle {n}".strip(", ")])
    return sorted(rows, key=lambda r: (r[0], r[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--label", required=True, help="source class name as in data.yaml")
    parser.add_argument("--min-frames", type=int, default=3)
    parser.add_argument("--min-width", type=float, default=40 / 640, help="share of frame width")
    parser.add_argument("--out", type=Path, help="folder for the review grids")
    parser.add_argument("--fix", help="comma-separated vehicle numbers to correct")
    parser.add_argument("--to", help="source class name the fixed boxes get")
    parser.add_argument("--note", default="", help="note written on each fixes row")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    found = vehicles(args.data, args.label, args.min_frames, args.min_width)
    log.info("%d vehicles labelled mostly %r on the training frames", len(found), args.label)
    if args.out is not None:
        for path in write_grids(found, args.label, args.out):
            log.info("wrote %s", path)
    if args.fix:
        if not args.to:
            raise SystemExit("--fix needs --to")
        numbers = [int(x) for x in args.fix.split(",") if x.strip()]
        csv.writer(sys.stdout).writerows(fix_rows(found, numbers, args.label, args.to, args.note))


if __name__ == "__main__":
    main()
