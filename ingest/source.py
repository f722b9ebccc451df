"""Pick the frame source a camera's configuration names, and its wall-clock start."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from truckcount.config import CameraConfig
from truckcount.ingest.errors import SourceError, mask_url
from truckcount.ingest.files import open_video
from truckcount.types import Frame

logger = logging.getLogger(__name__)

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def open_source(camera: CameraConfig, *, start: datetime | None = None) -> Iterator[Frame]:
    """Open the camera's source as timestamped frames sampled at ``camera.analysis_fps``.

    Configuration problems are raised at once; problems reading the file surface when iteration
    begins (see ``open_video``).

    Args:
        camera: the camera; ``source`` is a video file path or a ``file://`` URL.
        start: wall-clock time of the first frame; overrides ``camera.start``.

    Returns:
        Iterator of ``Frame``.

    Raises:
        SourceError: no source configured, a stream URL (not supported yet), or no start time.
    """
    if not camera.source:
        raise SourceError(f"camera {camera.id!r}: no source configured")
    path = _local_path(camera.id, camera.source)
    first = _start_time(camera, start)
    logger.info(
        "camera %s: source %s, first frame at %s",
        camera.id,
        mask_url(camera.source),
        first.isoformat(),
    )
    return open_video(path, camera_id=camera.id, start=first, analysis_fps=camera.analysis_fps)


def is_url(source: str) -> bool:
    """True when ``source`` looks like ``scheme://...`` rather than a file path."""
    return _SCHEME.match(source) is not None


def _local_path(camera_id: str, source: str) -> Path:
    match = _SCHEME.match(source)
    if match is None:
        return Path(source).expanduser()
    scheme = match.group(1).lower()
    if scheme == "file":
        return Path(url2pathname(urlsplit(source).path))
    raise SourceError(
        f"camera {camera_id!r}: {scheme}:// sources are not supported yet "
        f"({mask_url(source)}); only video files can be read for now"
    )


def _start_time(camera: CameraConfig, start: datetime | None) -> datetime:
    first = start if start is not None else camera.start
    if first is None:
        raise SourceError(
            f"camera {camera.id!r}: the wall-clock time of the first frame is unknown; "
            "pass --start (e.g. --start 2021-11-15T13:17:09+07:00) or set `start` in the "
            "camera's config"
        )
    if first.utcoffset() is None:
        raise SourceError(
            f"camera {camera.id!r}: start {first.isoformat()} needs a UTC offset, e.g. +07:00"
        )
    return first
