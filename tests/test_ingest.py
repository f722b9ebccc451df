"""Recorded video: frame time = start + presentation time, sampled without drift; bad files fail
with a message naming them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from truckcount.config import CameraConfig
from truckcount.ingest import SourceError, mask_url, open_source, open_video, probe_video

START = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def write_video(path: Path, pts: Sequence[int], time_base: Fraction, rate: Fraction) -> Path:
    """Encode tiny grey frames with these presentation timestamps (in ``time_base`` units)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = time_base
        for i, p in enumerate(pts):
            img = np.full((48, 64, 3), (i * 7) % 255, np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            frame.pts, frame.time_base = p, time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def seconds(frames: Sequence) -> list[float]:
    return [(f.ts - START).total_seconds() for f in frames]


@pytest.fixture(scope="module")
def ntsc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 frames at 29.97 fps (30000/1001)."""
    path = tmp_path_factory.mktemp("v") / "ntsc.mp4"
    return write_video(path, range(300), Fraction(1001, 30000), Fraction(30000, 1001))


def test_every_frame_time_is_start_plus_exact_pts(ntsc: Path) -> None:
    frames = list(open_video(ntsc, camera_id="c", start=START, analysis_fps=1000))
    assert [f.index for f in frames] == list(range(300))
    errors = [abs(t - n * 1001 / 30000) for n, t in enumerate(seconds(frames))]
    assert max(errors) < 1e-3, "no drift, unlike index / int(fps) which is 0.3 s off here"
    assert frames[0].image.shape == (48, 64, 3) and frames[0].image.dtype == np.uint8


def test_sampling_at_5_fps_keeps_one_frame_per_fifth_of_a_second(ntsc: Path) -> None:
    times = seconds(list(open_video(ntsc, camera_id="c", start=START, analysis_fps=5)))
    # 0.0 ... 10.0 s: the last frame (9.977 s) is within the sampler's early tolerance of 10.0 s
    assert len(times) == 51
    step = 1001 / 30000
    for k, t in enumerate(times):
        assert k * 0.2 - step <= t <= k * 0.2 + step, f"sample {k} at {t:.4f} s"


def test_variable_frame_rate_follows_the_timestamps(tmp_path: Path) -> None:
    pts_ms = [0, 40, 80, 300, 340, 1000, 1040]
    path = write_video(tmp_path / "vfr.mkv", pts_ms, Fraction(1, 1000), Fraction(25))
    frames = list(open_video(path, camera_id="c", start=START, analysis_fps=1000))
    assert seconds(frames) == pytest.approx([p / 1000 for p in pts_ms], abs=1e-6)


def test_source_slower_than_the_analysis_rate_keeps_every_frame(tmp_path: Path) -> None:
    path = write_video(tmp_path / "slow.mp4", range(10), Fraction(1, 2), Fraction(2))
    frames = list(open_video(path, camera_id="c", start=START, analysis_fps=5))
    assert seconds(frames) == pytest.approx([n / 2 for n in range(10)])


def test_probe_reports_size_and_exact_rate(ntsc: Path) -> None:
    info = probe_video(ntsc)
    assert (info.width, info.height, info.fps) == (64, 48, Fraction(30000, 1001))
    assert info.duration_s == pytest.approx(10.01, abs=0.05)


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda p: None, "missing.mp4"),
        (lambda p: p.write_text("just some text"), "text.mp4"),
        (lambda p: p.write_bytes(b""), "empty.mp4"),
    ],
)
def test_bad_files_raise_source_error_naming_the_file(tmp_path: Path, make, name: str) -> None:
    path = tmp_path / name
    make(path)
    with pytest.raises(SourceError, match=name):
        probe_video(path)
    with pytest.raises(SourceError, match=name):
        list(open_video(path, camera_id="c", start=START, analysis_fps=5))


def test_truncated_file_never_hangs(ntsc: Path, tmp_path: Path) -> None:
    """An MP4 cut mid-way (its index at the end is lost) is unreadable: a clear error, at once."""
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(ntsc.read_bytes()[: ntsc.stat().st_size // 2])
    try:
        frames = list(open_video(cut, camera_id="c", start=START, analysis_fps=5))
    except SourceError as exc:
        assert "cut.mp4" in str(exc)
    else:
        assert len(frames) < 50


def test_open_source_needs_a_start_time(ntsc: Path) -> None:
    cam = CameraConfig(id="c", source=str(ntsc))
    with pytest.raises(SourceError, match="--start"):
        open_source(cam)
    frames = open_source(cam, start=START + timedelta(hours=1))
    assert next(iter(frames)).ts == START + timedelta(hours=1)


def test_credentials_are_masked() -> None:
    assert mask_url("rtsp://user:secret@10.0.0.5/stream") == "rtsp://***@10.0.0.5/stream"
    assert "secret" not in mask_url("http://cam/x.mjpg?token=secret")
    assert mask_url("/videos/a.mp4") == "/videos/a.mp4"
