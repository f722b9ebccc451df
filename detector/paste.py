"""Copy-paste augmentation for a fixed camera: rare vehicles pasted where they were filmed.

The camera does not move, so a truck cut from one frame of a sequence and pasted at the *same
place* of another frame of that sequence keeps its size, perspective and lighting; only the
traffic around it changes. This multiplies the rare classes (trucks, buses; night trucks above
all) in new company without inventing views the camera never gives. Only instances that stand
clear of other labelled vehicles are banked, and a paste is skipped where it would hide much of a
vehicle already in the frame, so no label ends up covered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from truckcount.detector.data import Sample

Image = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Instance:
    """One pasteable vehicle: the frame it comes from (index into the image list) and its box."""

    frame: int
    box: npt.NDArray[np.float32]  # normalised x1 y1 x2 y2
    class_id: int


def _covered(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Share of each box of ``a`` (M, 4) that each box of ``b`` (N, 4) covers; (M, N)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = np.prod(np.clip(a[:, 2:] - a[:, :2], 1e-9, None), axis=1)
    return np.asarray(inter / area[:, None])


class InstanceBank:
    """Isolated instances of the chosen classes in the training frames, grouped by sequence.

    Args:
        samples: the training samples (repeats, e.g. oversampled night frames, are banked once).
        class_ids: merged class ids worth pasting (the rare ones).
        min_side: smallest box side, normalised, worth pasting.
        max_overlap: an instance is banked only if it covers at most this share of any other
            labelled box of its frame (and no other box covers more of it), so its rectangle
            carries no half of an unlabelled neighbour into the new frame.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        class_ids: Sequence[int],
        min_side: float = 0.02,
        max_overlap: float = 0.1,
    ) -> None:
        self.max_overlap = max_overlap
        self.by_sequence: dict[str, list[Instance]] = {}
        seen: set[Path] = set()
        for i, s in enumerate(samples):
            if s.image_path in seen:
                continue
            seen.add(s.image_path)
            for j in range(len(s.boxes)):
                if int(s.classes[j]) in class_ids and self._isolated(s.boxes, j, min_side):
                    inst = Instance(i, s.boxes[j].astype(np.float32), int(s.classes[j]))
                    self.by_sequence.setdefault(s.sequence, []).append(inst)

    def _isolated(self, boxes: np.ndarray, j: int, min_side: float) -> bool:
        box = boxes[j : j + 1]
        if min(box[0, 2] - box[0, 0], box[0, 3] - box[0, 1]) < min_side:
            return False
        others = np.delete(boxes, j, axis=0)
        if not len(others):
            return True
        return bool(
            _covered(others, box).max() <= self.max_overlap
            and _covered(box, others).max() <= self.max_overlap
        )

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_sequence.values())

    def paste(
        self,
        img: Image,
        boxes: np.ndarray,
        classes: np.ndarray,
        sequence: str,
        images: Sequence[Image],
        rng: np.random.Generator,
        count: int,
    ) -> tuple[Image, np.ndarray, np.ndarray]:
        """Paste up to ``count`` instances of ``sequence`` into ``img`` at their own place.

        ``images`` is the image list the instances index; images of another size are skipped.
        A paste that would cover more than ``max_overlap`` of a box already in the frame is
        skipped. Returns a new image and the boxes and classes with the pasted ones appended.
        """
        pool = self.by_sequence.get(sequence, [])
        if not pool or count <= 0:
            return img, boxes, classes
        out = img.copy()
        h, w = img.shape[:2]
        new_boxes, new_classes = list(boxes), list(classes)
        for k in rng.choice(len(pool), size=min(count, len(pool)), replace=False):
            inst = pool[int(k)]
            donor = images[inst.frame]
            current = np.asarray(new_boxes, np.float32).reshape(-1, 4)
            if donor.shape != img.shape or (
                len(current) and _covered(current, inst.box[None]).max() > self.max_overlap
            ):
                continue
            x0, y0 = int(inst.box[0] * w), int(inst.box[1] * h)
            x1, y1 = int(np.ceil(inst.box[2] * w)), int(np.ceil(inst.box[3] * h))
            out[y0:y1, x0:x1] = donor[y0:y1, x0:x1]
            new_boxes.append(inst.box)
            new_classes.append(inst.class_id)
        return (
            out,
            np.asarray(new_boxes, np.float32).reshape(-1, 4),
            np.asarray(new_classes, np.int64),
        )
