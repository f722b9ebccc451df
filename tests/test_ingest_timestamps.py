"""A recording's first-frame time, by the camera's priority, and frame time = start + PTS.

Sources in order of trust: an explicit start, the file name (in the camera's zone), the
container's creation_time, and the file's mtime minus its duration (with a warning).
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from truckcount.config import CameraConfig
from truckcount.ingest import SourceError, open_source
from truckcount.ingest.timestamps import parse_filename_time, recording_start

NTSC = Fraction(1001, 30000)
HOUR_FRAMES = 107_892
"""The 29.97 fps frame nearest one hour: 107892 x 1001/30000 s = 3599.9964 s."""


def tiny_video(
    path: Path, pts: list[int], time_base: Fraction, creation: str | None = None
) -> Path:
    """16x16 MPEG-4 frames at these presentation timestamps (``time_base`` units)."""
    with av.open(str(path), "w") as out:
        if creation is not None:
            out.metadata["creation_time"] = creation
        stream = out.add_stream("mpeg4", rate=Fraction(30000, 1001))
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = time_base
        for i, p in enumerate(pts):
            img = np.full((16, 16, 3), (i * 40) % 255, np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            frame.pts, frame.time_base = p, time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def cam(**fields: object) -> CameraConfig:
    return CameraConfig.model_validate({"id": "cam1", "analysis_fps": 120, **fields})


@pytest.fixture(scope="module")
def hour_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """29.97 fps frames 0, 1, 2, then frames around the one-hour mark: a tiny file, 1 h long."""
    path = tmp_path_factory.mktemp("ts") / "cam1_20240601_120000.mp4"
    pts = [0, 1, 2, HOUR_FRAMES - 1, HOUR_FRAMES]
    return tiny_video(path, pts, NTSC, creation="2024-06-01T05:00:07.000000Z")


def test_after_an_hour_of_2997_media_frame_time_is_start_plus_pts(hour_file: Path) -> None:
    """Exact PTS arithmetic: < 1 ms off after an hour, where index / 30 would be 3.6 s off."""
    start = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    frames = list(open_source(cam(source=str(hour_file)), start=start))
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    expected = [0, 1, 2, HOUR_FRAMES - 1, HOUR_FRAMES]
    for frame, n in zip(frames, expected, strict=True):
        drift = abs((frame.ts - start).total_seconds() - float(n * NTSC))
        assert drift < 1e-3
    assert (frames[-1].ts - start).total_seconds() == pytest.approx(3599.9964, abs=1e-3)
    assert abs(HOUR_FRAMES / 30 - float(HOUR_FRAMES * NTSC)) > 3.5, "why int(fps) is wrong"


def test_variable_frame_rate_keeps_every_gap(tmp_path: Path) -> None:
    """Irregular timestamps on a millisecond clock (as Matroska), with a 40-minute hole."""
    pts = [0, 33, 100, 1101, 1101 + 2_400_000, 1101 + 2_400_000 + 34]
    path = tiny_video(tmp_path / "vfr.mp4", pts, Fraction(1, 1000))
    start = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    frames = list(open_source(cam(source=str(path)), start=start))
    got = [(f.ts - start).total_seconds() for f in frames]
    assert got == pytest.approx([p / 1000 for p in pts], abs=1e-3)


@pytest.mark.parametrize(
    ("name", "pattern", "zone", "expected"),
    [
        # name, strptime pattern, camera zone -> UTC first-frame time (None: no match)
        (
            "cam1_20240601_120000.mp4",
            "cam1_%Y%m%d_%H%M%S.mp4",
            "Asia/Jakarta",
            "2024-06-01T05:00:00",
        ),
        (
            "cam1_20240601_120000.mp4",
            "cam1_%Y%m%d_%H%M%S.mp4",
            "Europe/Berlin",
            "2024-06-01T10:00:00",
        ),
        (
            "cam1_20240115_120000.mp4",
            "cam1_%Y%m%d_%H%M%S.mp4",
            "Europe/Berlin",
            "2024-01-15T11:00:00",
        ),
        (
            "c_2024-06-01T12:00:00+0200.mkv",
            "c_%Y-%m-%dT%H:%M:%S%z.mkv",
            "Asia/Jakarta",
            "2024-06-01T10:00:00",
        ),
        ("other_20240601_120000.mp4", "cam1_%Y%m%d_%H%M%S.mp4", "UTC", None),
    ],
)
def test_file_name_times_are_in_the_cameras_zone(
    name: str, pattern: str, zone: str, expected: str | None
) -> None:
    got = parse_filename_time(name, pattern, zone)
    want = None if expected is None else datetime.fromisoformat(expected).replace(tzinfo=UTC)
    assert got == want


def test_priority_start_then_filename_then_creation_time(hour_file: Path) -> None:
    pattern = "cam1_%Y%m%d_%H%M%S.mp4"
    order = ("start", "filename", "creation_time")
    explicit = datetime(2024, 6, 1, 9, 0, tzinfo=UTC)
    camera = cam(timestamps=order, filename_pattern=pattern, timezone="Asia/Jakarta")
    assert recording_start(camera, hour_file, start=explicit).source == "start"
    by_name = recording_start(camera, hour_file)
    assert (by_name.source, by_name.ts) == ("filename", datetime(2024, 6, 1, 5, 0, tzinfo=UTC))
    tagged = recording_start(camera.model_copy(update={"filename_pattern": "x_%Y.mp4"}), hour_file)
    assert (tagged.source, tagged.ts) == (
        "creation_time",
        datetime(2024, 6, 1, 5, 0, 7, tzinfo=UTC),
    )


def test_mtime_minus_duration_is_the_last_resort_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tiny_video(tmp_path / "untagged.mp4", [0, 30, 60, 90], NTSC)  # 3 s + one frame
    modified = datetime(2024, 6, 1, 12, 0, 10, tzinfo=UTC)
    os.utime(path, (modified.timestamp(), modified.timestamp()))
    camera = cam(timestamps=("start", "creation_time", "mtime"))
    with caplog.at_level(logging.WARNING):
        found = recording_start(camera, path)
    assert found.source == "mtime"
    assert abs((modified - found.ts) - timedelta(seconds=3.03)) < timedelta(milliseconds=50)
    assert "modification time" in caplog.text and "untagged.mp4" in caplog.text


def test_no_applicable_source_names_the_file_and_the_fix(tmp_path: Path) -> None:
    path = tiny_video(tmp_path / "clip.mp4", [0, 1], NTSC)
    camera = cam(timestamps=("start", "filename", "creation_time"))
    with pytest.raises(SourceError, match=r"clip\.mp4") as err:
        recording_start(camera, path)
    assert "--start" in str(err.value) and "tried start, filename, creation_time" in str(err.value)
