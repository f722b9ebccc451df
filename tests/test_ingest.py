"""Recorded video: frame time = start + presentation time, sampled without drift; bad files fail
with a message naming them."""

from __future__ import annotations

import logging
import wave
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from truckcount.config import CameraConfig, ConfigError, parse_config
from truckcount.ingest import (
    FrameSampler,
    SourceError,
    mask_url,
    open_source,
    open_video,
    probe_video,
)

START = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
DEMO_CLIP = Path(__file__).resolve().parent.parent / "demo" / "km39-siang.mp4"


def write_video(
    path: Path, pts: Sequence[int], time_base: Fraction, rate: Fraction, *, noise: bool = False
) -> Path:
    """Encode tiny frames with these presentation timestamps (in ``time_base`` units).

    Frames are flat grey, or random noise with ``noise`` (big packets, so damage in the middle of
    the file lands inside frame data rather than in a header).
    """
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = time_base
        for i, p in enumerate(pts):
            img = np.full((48, 64, 3), (i * 7) % 255, np.uint8)
            if noise:
                img = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
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
    # 0.0 ... 9.8 s: the last frame (9.977 s) is 23 ms short of 10.0 s, more than the sampler's
    # early tolerance (20 ms)
    assert len(times) == 50
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
    with pytest.raises(SourceError, match=r"cut\.mp4"):
        open_video(cut, camera_id="c", start=START, analysis_fps=5)


def test_open_source_needs_a_start_time(ntsc: Path) -> None:
    cam = CameraConfig(id="c", source=str(ntsc))
    with pytest.raises(SourceError, match="--start"):
        open_source(cam)
    frames = open_source(cam, start=START + timedelta(hours=1))
    assert next(iter(frames)).ts == START + timedelta(hours=1)


def test_credentials_are_masked() -> None:
    assert mask_url("rtsp://user:secret@10.0.0.5/stream") == "rtsp://***@10.0.0.5/stream"
    assert "secret" not in mask_url("http://cam/x.mjpg?token=secret")
    assert mask_url("rtsp://cam/s?api_key=k1&channel=2") == "rtsp://cam/s?api_key=***&channel=2"
    assert mask_url("/videos/a.mp4") == "/videos/a.mp4"


def test_variable_frame_rate_sampling_keeps_no_burst_after_a_gap(tmp_path: Path) -> None:
    """After a 0.7 s gap the sampler does not catch up with a run of frames: the next sample is
    the first grid point after the frame it kept."""
    pts_ms = [0, 40, 100, 110, 300, 1000, 1033, 1066]
    path = write_video(tmp_path / "vfr.mkv", pts_ms, Fraction(1, 1000), Fraction(25))
    frames = list(open_video(path, camera_id="c", start=START, analysis_fps=5))
    assert [f.index for f in frames] == [0, 4, 5]
    assert seconds(frames) == pytest.approx([0.0, 0.3, 1.0], abs=1e-6)


@pytest.mark.parametrize(
    ("times", "kept"),
    [
        # a 5 fps camera whose stamps are rounded to whole milliseconds loses no sample
        ([0, 0.199, 0.4, 0.599, 0.8], [0, 0.199, 0.4, 0.599, 0.8]),
        # 10 fps -> every other frame
        ([0, 0.1, 0.2, 0.3, 0.4, 0.5], [0, 0.2, 0.4]),
        # a frame earlier than the first (reordered stamps) is never kept
        ([0, -0.1, 0.2], [0, 0.2]),
    ],
)
def test_sampler_table(times: list[float], kept: list[float]) -> None:
    sampler = FrameSampler(5)
    exact = [Fraction(str(t)) for t in times]
    assert [float(t) for t in exact if sampler.keep(t)] == kept


def test_sampler_never_drifts_over_ten_minutes_of_29_97_fps() -> None:
    sampler = FrameSampler(5)
    step = Fraction(1001, 30000)
    kept = [n * step for n in range(18_000) if sampler.keep(n * step)]
    assert len(kept) == 3003  # 18,000 frames span 600.57 s: samples at 0, 0.2, ..., 600.4 s
    for k, t in enumerate(kept):
        assert Fraction(k, 5) - step < t < Fraction(k, 5) + step, f"sample {k} at {float(t)} s"


def test_bad_file_fails_before_iteration(tmp_path: Path) -> None:
    """The pipeline opens the source before loading the model, so a bad path fails fast."""
    with pytest.raises(SourceError, match=r"nowhere\.mp4: no such file"):
        open_video(tmp_path / "nowhere.mp4", camera_id="c", start=START, analysis_fps=5)


def test_file_without_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "sound.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 800)
    with pytest.raises(SourceError, match=r"sound\.wav: no video stream \(streams found: audio\)"):
        probe_video(path)


def test_truncated_matroska_yields_what_it_has_then_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A recording cut off mid-write whose header survived: the frames before the cut are real
    data, so they are counted; the warning tells the operator the file ends early."""
    full = write_video(tmp_path / "full.mkv", range(60), Fraction(1, 10), Fraction(10), noise=True)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with caplog.at_level(logging.WARNING, logger="truckcount.ingest"):
        frames = list(open_video(cut, camera_id="c", start=START, analysis_fps=10))
    assert 10 < len(frames) < 60
    assert seconds(frames) == pytest.approx([n / 10 for n in range(len(frames))])
    assert any("cut.mkv" in r.message and "truncated" in r.message for r in caplog.records)


def test_damaged_packet_mid_file_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    full = write_video(tmp_path / "ok.mp4", range(40), Fraction(1, 10), Fraction(10), noise=True)
    data = bytearray(full.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 500] = np.random.default_rng(0).integers(0, 255, 500, np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="truckcount.ingest"):
        frames = list(open_video(damaged, camera_id="c", start=START, analysis_fps=10))
    assert 35 <= len(frames) < 40
    assert any("damaged.mp4" in r.message and "damaged packet" in r.message for r in caplog.records)


def test_naive_start_is_rejected(ntsc: Path) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        open_video(ntsc, camera_id="c", start=datetime(2024, 6, 1, 12), analysis_fps=5)


def test_unknown_url_schemes_are_refused_without_leaking_credentials() -> None:
    url = "ftp://admin:secret@10.0.0.5/live.mp4"
    with pytest.raises(ConfigError, match="unsupported URL scheme 'ftp'") as bad_config:
        parse_config({"cameras": [{"id": "c", "source": url}]})
    assert "secret" not in str(bad_config.value)
    # a camera built without validation still cannot open it
    cam = CameraConfig.model_construct(id="c", source=url, start=START)
    with pytest.raises(SourceError, match="not supported") as err:
        open_source(cam)
    assert "secret" not in str(err.value)
    assert "ftp://***@10.0.0.5/live.mp4" in str(err.value)


def test_open_source_uses_the_configured_start_and_rate(ntsc: Path) -> None:
    cam = CameraConfig(id="c", source=ntsc.as_uri(), start=START, analysis_fps=1)
    frames = list(open_source(cam))
    assert [f.camera_id for f in frames] == ["c"] * 10
    assert seconds(frames) == pytest.approx(list(range(10)), abs=0.04)


@pytest.mark.skipif(not DEMO_CLIP.exists(), reason="demo clip not built")
def test_demo_clip_runs_on_the_burnt_in_clock() -> None:
    """Frame 0 shows 13:17:09 (+07:00) and frame 374 is 74.8 s later, at exactly 5 fps."""
    info = probe_video(DEMO_CLIP)
    assert (info.width, info.height, info.fps, info.frame_count) == (640, 360, Fraction(5), 375)
    start = datetime.fromisoformat("2021-11-15T13:17:09+07:00")
    assert info.creation_time == start
    frames = list(open_video(DEMO_CLIP, camera_id="km39", start=start, analysis_fps=0.5))
    assert frames[0].ts == start and frames[0].index == 0
    assert [f.index for f in frames][-1] == 370
    assert frames[-1].ts == start + timedelta(seconds=74)
