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
from truckcount.ingest.live import LiveClock, is_live, open_stream, read_stream
from truckcount.ingest.timestamps import recording_start
from truckcount.types import Frame

logger = logging.getLogger(__name__)

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def open_source(camera: CameraConfig, *, start: datetime | None = None) -> Iterator[Frame]:
    """Open the camera's source as timestamped frames sampled at ``camera.analysis_fps``.

    A recording's frames are stamped ``first-frame time + presentation time``; the first-frame
    time comes from the camera's ``timestamps`` priority (see ``timestamps.recording_start``).
    A live source (stream URL or ``/dev/videoN``) is read over one connection, stamped by the
    receive clock (see ``live``); ``reader.CameraReader`` adds reconnection and a watchdog.

    Configuration problems are raised at once; problems reading surface during iteration.

    Args:
        camera: the camera; ``source`` is a video file path, a ``file://`` URL or a live source.
        start: wall-clock time of a recording's first frame; overrides ``camera.start``.

    Returns:
        Iterator of ``Frame``.

    Raises:
        SourceError: no source configured, an unsupported URL scheme, no start time, or a live
            source that cannot be opened.
    """
    if not camera.source:
        raise SourceError(f"camera {camera.id!r}: no source configured")
    if is_live(camera.source):
        logger.info("camera %s: live source %s", camera.id, mask_url(camera.source))
        return read_stream(open_stream(camera), camera, LiveClock())
    path = _local_path(camera.id, camera.source)
    first = recording_start(camera, path, start=start).ts
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
        f"camera {camera_id!r}: {scheme}:// sources are not supported "
        f"({mask_url(source)}); use a file, rtsp(s)://, http(s)://, or /dev/videoN"
    )
