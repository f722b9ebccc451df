"""Image folders as frame sources: the numbered frames of one sequence, stamped by their index.

A sequence is the files ``<name>-<index>.<ext>`` of one folder (``km39-00042.jpg``), frames of one
video taken at a stated frame rate. Frame ``index`` was captured at ``start + index / fps``. A
missing index is a gap in the recording: nothing is yielded for it, and the next frame keeps its
own time, so a tracker downstream sees the gap on the media clock.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from truckcount.ingest.errors import SourceError
from truckcount.types import Frame

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass(frozen=True)
class ImageSequence:
    """The numbered image files of one sequence, in index order.

    Attributes:
        folder: the folder holding the images.
        name: sequence name, the part of the file stem before ``-<index>``.
        files: index -> image file, sorted by index.
    """

    folder: Path
    name: str
    files: dict[int, Path]

    @classmethod
    def scan(cls, folder: Path, name: str) -> ImageSequence:
        """Find the images ``<name>-<index>.<ext>`` in ``folder``.

        Raises:
            SourceError: the folder is missing, or holds no image of the sequence.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise SourceError(f"{folder}: no such folder")
        pattern = re.compile(rf"^{re.escape(name)}-(\d+)$")
        found: dict[int, Path] = {}
        for path in folder.iterdir():
            match = pattern.match(path.stem)
            if match and path.suffix.lower() in IMAGE_SUFFIXES:
                index = int(match.group(1))
                if index in found:
                    raise SourceError(f"{folder}: frame {index} of {name!r} exists twice")
                found[index] = path
        if not found:
            raise SourceError(f"{folder}: no images named {name}-<index> ({IMAGE_SUFFIXES})")
        return cls(folder, name, dict(sorted(found.items())))

    @property
    def gaps(self) -> list[int]:
        """Missing indices between the first and the last frame."""
        first, last = min(self.files), max(self.files)
        return [i for i in range(first, last + 1) if i not in self.files]


def open_image_sequence(
    sequence: ImageSequence,
    *,
    camera_id: str,
    start: datetime,
    fps: float,
    first: int | None = None,
    last: int | None = None,
) -> Iterator[Frame]:
    """Read the images of a sequence as frames stamped ``start + index / fps``.

    Args:
        sequence: the files, from ``ImageSequence.scan``.
        camera_id: id put on every frame.
        start: timezone-aware capture time of frame index 0.
        fps: frames per second of the recording the sequence was taken from, > 0.
        first: lowest index read (inclusive); None reads from the first file.
        last: highest index read (inclusive); None reads to the last file.

    Returns:
        Iterator of ``Frame`` in index order; ``Frame.index`` is the file's index and ``ts`` is
        in UTC. Missing indices yield nothing.

    Raises:
        ValueError: ``start`` is naive or ``fps`` is not positive (raised at once).
        SourceError: during iteration, when an image cannot be read.
    """
    if start.utcoffset() is None:
        raise ValueError(f"start: expected a timezone-aware datetime, got naive {start!r}")
    if not fps > 0:
        raise ValueError(f"fps: expected > 0, got {fps}")
    lo = -1 if first is None else first
    hi = max(sequence.files) if last is None else last
    chosen = {i: p for i, p in sequence.files.items() if lo <= i <= hi}
    return _read(chosen, camera_id, start.astimezone(UTC), fps)


def _read(files: dict[int, Path], camera_id: str, start: datetime, fps: float) -> Iterator[Frame]:
    for index, path in files.items():
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(f"{path}: not a readable image")
        ts = start + timedelta(seconds=index / fps)
        yield Frame(camera_id, ts, index, np.asarray(image, dtype=np.uint8))
    logger.info("%s: %d frames read", camera_id, len(files))
