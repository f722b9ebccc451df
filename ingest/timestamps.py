"""The wall-clock time of a recording's first frame, from the sources a camera trusts.

Frame times of a recording are then ``start + pts * time_base`` (see ``files.open_video``): only the
start needs an outside clock. The camera's ``timestamps`` lists the sources to try, first that
applies wins:

* ``start``: given explicitly (``--start`` or the camera's ``start``).
* ``filename``: parsed from the file name with ``filename_pattern`` (strptime), in the camera's
  time zone unless the pattern has ``%z``. Recorders name files after their first frame.
* ``creation_time``: the container's tag (UTC). Often the time the file was *written*, which for
  a recorder that closes files at the end is the last frame, so it is opt-in.
* ``mtime``: the file's modification time minus its duration: the last resort, with a warning,
  since copying a file changes its mtime.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from truckcount.config import CameraConfig
from truckcount.ingest.errors import SourceError
from truckcount.ingest.files import probe_video

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordingStart:
    """When a recording's first frame was captured, and which source said so.

    Attributes:
        ts: aware UTC time of the first frame.
        source: ``start``, ``filename``, ``creation_time`` or ``mtime``.
    """

    ts: datetime
    source: str


def parse_filename_time(name: str, pattern: str, zone: str) -> datetime | None:
    """Time encoded in a file name, or None when the name does not match ``pattern``.

    Args:
        name: the file name (not the folder), e.g. ``cam1_20240601_120000.mp4``.
        pattern: strptime pattern of the whole name, e.g. ``cam1_%Y%m%d_%H%M%S.mp4``.
        zone: IANA zone of a pattern without ``%z``.

    Returns:
        The aware UTC time, or None.
    """
    try:
        ts = datetime.strptime(name, pattern)
    except ValueError:
        return None
    if ts.utcoffset() is None:
        ts = ts.replace(tzinfo=ZoneInfo(zone))
    return ts.astimezone(UTC)


def recording_start(
    camera: CameraConfig, path: Path, *, start: datetime | None = None
) -> RecordingStart:
    """Decide the first frame's wall-clock time by the camera's ``timestamps`` priority.

    Args:
        camera: its ``timestamps``, ``filename_pattern``, ``timezone`` and ``start`` are used.
        path: the recording.
        start: an explicit start (``--start``); overrides ``camera.start``.

    Returns:
        The start and the source that gave it.

    Raises:
        SourceError: no listed source applies, or an explicit start is naive; the message
            names the camera, the file and what was tried.
    """
    explicit = start if start is not None else camera.start
    for kind in camera.timestamps:
        found = _try(kind, camera, Path(path), explicit)
        if found is not None:
            logger.info("camera %s: %s starts at %s (%s)", camera.id, path, found, kind)
            return RecordingStart(found, kind)
    tried = ", ".join(camera.timestamps)
    raise SourceError(
        f"camera {camera.id!r}: the wall-clock time of the first frame of {Path(path).name} is "
        f"unknown (tried {tried}); pass --start (e.g. --start 2021-11-15T13:17:09+07:00), set "
        "`start` or `filename_pattern` in the camera's config, or add creation_time / mtime to "
        "its `timestamps`"
    )


def _try(kind: str, camera: CameraConfig, path: Path, explicit: datetime | None) -> datetime | None:
    if kind == "start":
        if explicit is not None and explicit.utcoffset() is None:
            when = explicit.isoformat()
            raise SourceError(f"camera {camera.id!r}: start {when} needs a UTC offset, e.g. +07:00")
        return explicit.astimezone(UTC) if explicit is not None else None
    if kind == "filename":
        if camera.filename_pattern is None:
            return None
        return parse_filename_time(path.name, camera.filename_pattern, camera.timezone)
    if kind == "creation_time":
        return probe_video(path).creation_time
    return _mtime_start(camera.id, path)


def _mtime_start(camera_id: str, path: Path) -> datetime | None:
    info = probe_video(path)
    if info.duration_s is None:
        return None
    modified = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    ts = modified - timedelta(seconds=info.duration_s)
    logger.warning(
        "camera %s: %s has no better start time; using its modification time minus its "
        "duration (%s), which is wrong if the file was copied or edited",
        camera_id,
        path.name,
        ts.isoformat(),
    )
    return ts
