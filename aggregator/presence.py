"""The truck-presence feature: per camera, how many analysed frames held a truck, per time slot.

The truck-presence classifier (``detector/presence.py``) looks at every analysed frame; a frame
holds a truck when any grid cell's probability reaches the configured threshold. The tally adds
frames up per 15-minute UTC slot (``PRESENCE_SLOT_S``), which tile every zone's local hours and
days, and hands the slots to storage when a run closes; a bucket's share of frames with a truck is
then the sum over its slots.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from truckcount.detector.presence import PresenceClassifier
from truckcount.types import PRESENCE_SLOT_S, Frame, PresenceSlot


def slot_start(ts: datetime) -> datetime:
    """Start of the 15-minute UTC slot holding the aware instant ``ts``."""
    seconds = int(ts.timestamp() // PRESENCE_SLOT_S) * PRESENCE_SLOT_S
    return datetime.fromtimestamp(seconds, UTC)


class PresenceTally:
    """One camera's frames and truck frames per slot since the last ``drain``.

    Args:
        camera_id: the camera whose frames are tallied.
        classifier: the shared truck-presence classifier.
        threshold: lowest cell probability that makes a frame hold a truck.
    """

    def __init__(self, camera_id: str, classifier: PresenceClassifier, threshold: float) -> None:
        self.camera_id = camera_id
        self.classifier = classifier
        self.threshold = threshold
        self._slots: dict[datetime, list[int]] = {}

    def observe(self, frames: Sequence[Frame], probs: npt.NDArray[np.float32]) -> None:
        """Count ``frames`` given their (N, cells) truck probabilities from ``classifier``."""
        if len(frames) != len(probs):
            raise ValueError(f"{len(frames)} frames but {len(probs)} probability rows")
        trucks = probs.max(axis=1) >= self.threshold if len(probs) else []
        for frame, truck in zip(frames, trucks, strict=True):
            tally = self._slots.setdefault(slot_start(frame.ts), [0, 0])
            tally[0] += 1
            tally[1] += int(truck)

    def drain(self) -> list[PresenceSlot]:
        """The slots counted so far, oldest first; the tally starts again from zero."""
        slots = [
            PresenceSlot(self.camera_id, start, frames, trucks)
            for start, (frames, trucks) in sorted(self._slots.items())
        ]
        self._slots.clear()
        return slots
