"""Vehicles a labelled folder leaves out, kept beside it as boxes to ignore in training.

Label files of real footage are rarely complete: the km39 frames leave out many distant trucks
and trucks cut by the frame's edge. Training on them as they are teaches the network that these
vehicles are road, which is what lowers its scores on small, distant trucks. An ignore file is a
CSV with the header ``label_file,x0,y0,x1,y1`` (more columns, such as a note, are kept out of
the way): the label file's stem (``adit-00002``) and a box in normalised xyxy. Each box is added
to its training frame as an ``AMBIGUOUS`` box, taught as none of the classes and as no
background either (loss.build_targets). ``benchmarks/mine_unlabelled.py`` writes such a file from
trained models' confident boxes that no label overlaps.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from truckcount.detector.data import AMBIGUOUS, LabelError, Sample

COLUMNS = ("label_file", "x0", "y0", "x1", "y1")


def read_ignore_boxes(path: Path) -> dict[str, np.ndarray]:
    """Boxes per label-file stem, (N, 4) float32; ``LabelError`` naming the file and row when
    a row is malformed."""
    out: dict[str, list[list[float]]] = {}
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise LabelError(f"{path}: expected the columns {', '.join(COLUMNS)}")
            for row_no, row in enumerate(reader, start=2):
                out.setdefault(row["label_file"], []).append(_box(path, row_no, row))
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelError(f"{path}: cannot read the ignore file ({exc})") from exc
    return {k: np.asarray(v, np.float32) for k, v in out.items()}


def _box(path: Path, row_no: int, row: Mapping[str, str | None]) -> list[float]:
    try:
        box = [float(row[c] or "") for c in COLUMNS[1:]]
    except ValueError as exc:
        raise LabelError(f"{path}:{row_no}: expected numbers in x0,y0,x1,y1") from exc
    x0, y0, x1, y1 = box
    if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
        raise LabelError(f"{path}:{row_no}: expected 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1")
    return box


def add_ignored(
    samples: Sequence[Sample], boxes: Mapping[str, np.ndarray], source: str = "ignore file"
) -> list[Sample]:
    """``samples`` with the boxes of their label files appended as ``AMBIGUOUS``.

    Every stem in ``boxes`` must be one of the samples: a box meant for a frame that is not
    trained on (a validation frame, or a file not in the folder) is an error, not a no-op."""
    stems = {s.image_path.stem for s in samples}
    unknown = sorted(set(boxes) - stems)
    if unknown:
        raise LabelError(
            f"{source}: {len(unknown)} label files are not training frames of this folder "
            f"(first: {unknown[0]})"
        )
    out = []
    for s in samples:
        extra = boxes.get(s.image_path.stem)
        if extra is not None and len(extra):
            s = replace(
                s,
                boxes=np.concatenate([s.boxes, extra]).astype(np.float32),
                classes=np.concatenate([s.classes, np.full(len(extra), AMBIGUOUS)]).astype(
                    np.int64
                ),
            )
        out.append(s)
    return out
