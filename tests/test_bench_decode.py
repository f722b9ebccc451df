"""Decoding only what the analysis rate needs: frames left undecoded never change the result.

A 25 fps H.264 file with B-frames, analysed at 5 fps, is read twice: with non-reference frames
that no sample needs left undecoded (``NonRefSkipper``), and with every frame decoded. The kept
frames, their media-clock timestamps, their indices and their pixels must be the same.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from truckcount.ingest import files, open_video

START = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


def _b_frame_clip(path: Path, fps: int = 25, n: int = 75) -> Path:
    """A moving gradient, x264 ``superfast`` (3 B-frames), constant frame rate."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    with av.open(str(path), mode="w") as out:
        enc = out.add_stream("libx264", rate=fps, options={"preset": "superfast"})
        enc.width, enc.height, enc.pix_fmt = 160, 120, "yuv420p"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(np.roll(base, 2 * i, axis=1), format="bgr24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(enc.encode(frame))
        out.mux(enc.encode(None))
    return path


def _read(path: Path, fps: float) -> list[tuple[datetime, int, int]]:
    return [
        (f.ts, f.index, int(f.image.astype(np.int64).sum()))
        for f in open_video(path, camera_id="c", start=START, analysis_fps=fps)
    ]


@pytest.mark.parametrize("analysis_fps", [1.0, 5.0, 10.0])
def test_skipping_unneeded_frames_keeps_the_same_frames_times_and_indices(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    analysis_fps: float,
) -> None:
    clip = _b_frame_clip(tmp_path / "b.mp4")
    with caplog.at_level(logging.INFO, logger="truckcount.ingest.files"):
        skipped = _read(clip, analysis_fps)
    done = [r.getMessage() for r in caplog.records if "left undecoded" in r.getMessage()]
    assert done and " 0 left undecoded" not in done[-1], f"nothing was skipped: {done}"
    monkeypatch.setattr(files.NonRefSkipper, "for_stream", classmethod(lambda cls, *a: None))
    full = _read(clip, analysis_fps)
    assert skipped == full
    assert len(full) == int(3 * analysis_fps), "one frame per sample over 3 s"


def test_every_frame_is_decoded_when_the_analysis_rate_needs_most_of_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clip = _b_frame_clip(tmp_path / "b.mp4")
    with caplog.at_level(logging.INFO, logger="truckcount.ingest.files"):
        kept = _read(clip, 20.0)
    assert any(" 0 left undecoded" in r.getMessage() for r in caplog.records)
    assert len(kept) == 60
    assert [i for _, i, _ in kept][:5] == [0, 2, 3, 4, 5], "the 0.04 s frame is short of 0.05 s"


def test_sample_times_hold_on_the_media_clock(tmp_path: Path) -> None:
    kept = _read(_b_frame_clip(tmp_path / "b.mp4"), 5.0)
    assert [i for _, i, _ in kept] == list(range(0, 75, 5))
    assert [(ts - START).total_seconds() for ts, _, _ in kept] == [i / 25 for i in range(0, 75, 5)]
