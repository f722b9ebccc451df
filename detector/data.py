"""YOLO-format labelled frames: reading, the time-based split, and class merging.

A dataset folder holds ``images/<sequence>-<index>.jpg`` and ``labels/<sequence>-<index>.txt``
with lines ``class cx cy w h`` normalised to [0, 1], and a ``data.yaml`` naming the classes.
Source classes are merged to truck / bus / car by name. Empty label files mean "unlabelled", not
"no vehicles".
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import yaml

from truckcount.detector.label_fixes import LabelFixError, LabelFixes
from truckcount.types import VehicleClass

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(?P<seq>.+)-(?P<idx>\d+)$")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")

# Source class name -> merged class. Names are those of the km39 data.yaml.
MERGE: dict[str, VehicleClass] = {
    **{n: VehicleClass.TRUCK for n in ("big truck", "mid truck", "small truck")},
    **{n: VehicleClass.TRUCK for n in ("truck-l-", "truck-m-", "truck-s-", "truck-xl-", "truck")},
    **{n: VehicleClass.BUS for n in ("big bus", "bus-l-", "bus-s-", "small bus", "bus")},
    "car": VehicleClass.CAR,
}


AMBIGUOUS = -1  # merged class id of a box the labels disagree on (mark_ambiguous)


class LabelError(ValueError):
    """A label file or dataset folder is malformed."""


@dataclass(frozen=True)
class Sample:
    """One labelled image: boxes in normalised xyxy and merged class ids."""

    image_path: Path
    sequence: str
    index: int
    boxes: npt.NDArray[np.float32]  # (N, 4) normalised x1 y1 x2 y2
    classes: npt.NDArray[np.int64]  # (N,) merged class ids

    @property
    def night(self) -> bool:
        return "malam" in self.sequence or "night" in self.sequence


def read_class_names(root: Path) -> dict[int, str]:
    """Source class ids and names of ``root/data.yaml``."""
    path = root / "data.yaml"
    if not path.is_file():
        raise LabelError(f"{path}: missing; it must name the classes")
    try:
        names = yaml.safe_load(path.read_text())["names"]
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise LabelError(f"{path}: cannot read class names ({exc})") from exc
    items = names.items() if isinstance(names, dict) else enumerate(names)
    return {int(i): str(n) for i, n in items}


def read_class_map(root: Path) -> dict[int, int]:
    """Map source class ids of ``root/data.yaml`` to merged class ids (unknown names dropped)."""
    names = read_class_names(root)
    mapping = {i: MERGE[n].id for i, n in names.items() if n in MERGE}
    if not mapping:
        known = list(names.values())
        raise LabelError(f"{root / 'data.yaml'}: none of the class names {known} is a vehicle")
    return mapping


def source_labels(sample: Sample, names: dict[int, str]) -> tuple[np.ndarray, list[str]]:
    """The sample's boxes (normalised xyxy) with their *source* class names (``names``: those of
    ``data.yaml``), before merging: to tell a ``truck-s-`` from a ``big truck``."""
    label = sample.image_path.parent.parent / "labels" / f"{sample.image_path.stem}.txt"
    known = {i: i for i, n in names.items() if n in MERGE}
    boxes, ids = parse_label_file(label, known)
    return boxes, [names[int(i)] for i in ids]


def parse_label_file(
    path: Path, class_map: dict[int, int], fixes: dict[int, tuple[int, int]] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read one YOLO label file; raise ``LabelError`` naming the file and line when malformed.

    ``fixes`` maps a line number to (source class it must have, source class it gets)."""
    boxes, classes = [], []
    fixes = dict(fixes or {})
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            cls, cx, cy, w, h = int(parts[0]), *(float(p) for p in parts[1:5])
        except (ValueError, TypeError) as exc:
            raise LabelError(f"{path}:{lineno}: expected 'class cx cy w h', got {line!r}") from exc
        if len(parts) != 5 or not all(0.0 <= v <= 1.0 for v in (cx, cy, w, h)):
            raise LabelError(f"{path}:{lineno}: expected 5 fields in [0, 1], got {line!r}")
        if lineno in fixes:
            cls = _fixed(path, lineno, cls, fixes.pop(lineno))
        if cls not in class_map:
            continue
        boxes.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
        classes.append(class_map[cls])
    if fixes:
        raise LabelFixError(f"{path}: a label fix names line {min(fixes)}, which has no box")
    arr = np.clip(np.asarray(boxes, np.float32).reshape(-1, 4), 0.0, 1.0)
    return arr, np.asarray(classes, np.int64)


def _fixed(path: Path, lineno: int, cls: int, fix: tuple[int, int]) -> int:
    """The class a fixed line gets, after checking it has the class the fix expects."""
    was, to = fix
    if cls != was:
        raise LabelFixError(
            f"{path}:{lineno}: a label fix expects class {was} here, the file has {cls} "
            "(the folder changed since the fixes were written)"
        )
    return to


def load_samples(
    root: Path, *, keep_unlabelled: bool = False, fixes: LabelFixes | None = None
) -> list[Sample]:
    """Read every labelled image under ``root``, sorted by sequence and index, with the class
    corrections of ``fixes`` applied (each must match a line of the folder)."""
    img_dir, lbl_dir = root / "images", root / "labels"
    if not img_dir.is_dir() or not lbl_dir.is_dir():
        raise LabelError(f"{root}: expected 'images/' and 'labels/' folders")
    class_map = read_class_map(root)
    pending = fixes.resolve(read_class_names(root)) if fixes is not None else {}
    samples = []
    for img in sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        m = _NAME.match(img.stem)
        label = lbl_dir / f"{img.stem}.txt"
        if m is None or not label.is_file():
            continue
        if label.stat().st_size == 0 and not keep_unlabelled:
            continue  # empty file = unlabelled frame, not an empty road
        boxes, classes = parse_label_file(label, class_map, pending.pop(img.stem, None))
        samples.append(Sample(img, m["seq"], int(m["idx"]), boxes, classes))
    if pending and fixes is not None:
        raise LabelFixError(
            f"{fixes.path}: fixes name {len(pending)} label files missing or empty in {root} "
            f"(first: {min(pending)})"
        )
    if not samples:
        raise LabelError(f"{root}: no labelled images found")
    samples.sort(key=lambda s: (s.sequence, s.index))
    return samples


def mark_ambiguous(plain: Sequence[Sample], fixed: Sequence[Sample]) -> list[Sample]:
    """``fixed`` with every box whose merged class its fixes changed given class ``AMBIGUOUS``.

    Both lists are the same folder loaded without and with a fixes file. Where the sequences
    disagree on what a vehicle is (pickups: trucks in one, cars in the others), training can
    then teach such boxes as neither class instead of picking one convention."""
    if [s.image_path for s in plain] != [s.image_path for s in fixed]:
        raise LabelError("mark_ambiguous: the two loads hold different images")
    out = []
    for a, b in zip(plain, fixed, strict=True):
        changed = a.classes != b.classes
        if changed.any():
            b = replace(b, classes=np.where(changed, AMBIGUOUS, b.classes).astype(np.int64))
        out.append(b)
    return out


def is_validation(s: Sample) -> bool:
    """The project's time split: all of siang_15112021_1 and malam_04112021 from frame 190 on."""
    return s.sequence == "siang_15112021_1" or (s.sequence == "malam_04112021" and s.index >= 190)


def split(samples: Sequence[Sample]) -> tuple[list[Sample], list[Sample]]:
    """Split by time, never randomly by frame: (train, validation)."""
    val = [s for s in samples if is_validation(s)]
    train = [s for s in samples if not is_validation(s)]
    return train, val


def read_image(path: Path) -> npt.NDArray[np.uint8]:
    """Read an image as BGR uint8, raising ``LabelError`` naming the file if unreadable."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise LabelError(f"{path}: not a readable image")
    return np.asarray(img, dtype=np.uint8)


def cache_images(
    samples: Sequence[Sample], size: int, progress: Callable[[int], None] | None = None
) -> list[npt.NDArray[np.uint8]]:
    """Decode every image once and keep it in RAM at ``size`` x ``size``."""
    out = []
    for s in samples:
        img = cv2.resize(read_image(s.image_path), (size, size), interpolation=cv2.INTER_AREA)
        out.append(np.asarray(img, dtype=np.uint8))
        if progress:
            progress(1)
    return out
