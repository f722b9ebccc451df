"""A live session over recorded files: segment runs, contiguous coverage, no drops, one detector.

Files go through the same session as streams (only the reader and the clock differ), so the
segment bookkeeping is checked here quickly, without a network.
"""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from sqlalchemy import func, select

from truckcount.config import (
    AppConfig,
    CameraConfig,
    CascadeConfig,
    ConfigError,
    StorageConfig,
    load_config,
)
from truckcount.detector.infer import Detector
from truckcount.ingest import open_video
from truckcount.live import LiveOptions, LiveSession, select_cameras
from truckcount.pipeline import build_stages, process_frames
from truckcount.storage.database import open_database
from truckcount.storage.models import CoverageRow, CrossingRow, PresenceRow, RunRow
from truckcount.storage.writer import StorageWriter
from truckcount.types import Crossing, RunInfo

START = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parent.parent
DEMO_CLIP, DEMO_CONFIG = REPO / "demo" / "km39-siang.mp4", REPO / "demo" / "km39.yaml"


def clip(path: Path, frames: int) -> Path:
    """``frames`` grey 64x48 frames at 5 fps."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            img = np.full((48, 64, 3), 100 + i, np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            frame.pts, frame.time_base = i, Fraction(1, 5)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


@pytest.fixture
def cfg(tmp_path: Path) -> AppConfig:
    cams = tuple(
        CameraConfig(
            id=f"f{i}",
            source=str(clip(tmp_path / f"f{i}.mp4", 20 + 5 * i)),
            start=START + timedelta(minutes=i),
            segment_seconds=1.0,
            queue_frames=2,
        )
        for i in range(2)
    )
    return AppConfig(storage=StorageConfig(url=f"sqlite:///{tmp_path}/live.db"), cameras=cams)


@pytest.mark.slow
def test_files_become_contiguous_complete_segment_runs_without_drops(cfg: AppConfig) -> None:
    writer = StorageWriter(cfg.storage.url)
    session = LiveSession(cfg, cfg.cameras, writer, Detector(cfg.detector))
    report = session.run(LiveOptions(max_batch=8, max_wait_s=0.05), threading.Event())
    writer.close()
    engine = open_database(cfg.storage.url)
    assert {s.camera_id: 0 for s in report.segments} == {"f0": 0, "f1": 0}
    for cam, frames in (("f0", 20), ("f1", 25)):
        segs = [s for s in report.segments if s.camera_id == cam]
        assert sum(s.frames for s in segs) == frames and sum(s.dropped for s in segs) == 0
        assert [s.frames for s in segs] == [5] * (frames // 5), "one segment per second of video"
        assert all(a.end == b.start for a, b in itertools.pairwise(segs)), "no holes"
    with engine.connect() as conn:
        runs = list(conn.execute(select(RunRow.status, RunRow.frames_analysed)))
        cover = list(conn.execute(select(CoverageRow.frames_dropped, CoverageRow.gap_reason)))
        tallied = conn.execute(
            select(PresenceRow.camera_id, func.sum(PresenceRow.frames)).group_by("camera_id")
        )
        presence = dict(tallied.all())
    assert len(runs) == 9 and {r.status for r in runs} == {"complete"}
    assert {(c.frames_dropped, c.gap_reason) for c in cover} == {(0, None)}
    assert report.outages == ()
    assert presence == {"f0": 20, "f1": 25}, "every analysed frame tallied once for the feature"


@pytest.mark.slow
def test_the_cascade_gates_live_cameras_with_the_offline_counts(tmp_path: Path) -> None:
    """The demo clip as a camera of a live session with the cascade on: the same crossings as
    the offline pipeline with the cascade, and the skipped frames still count as analysed."""
    demo = load_config(DEMO_CONFIG)
    cam = demo.camera("km39").model_copy(update={"source": str(DEMO_CLIP), "segment_seconds": 15})
    cfg = demo.model_copy(
        update={
            "storage": StorageConfig(url=f"sqlite:///{tmp_path}/live.db"),
            "cascade": CascadeConfig(enabled=True, use_presence=True),
            "cameras": (cam,),
        }
    )
    detector = Detector(cfg.detector)
    stages = build_stages(cfg, cam, RunInfo("offline", "km39", "", detector.version, "", START))
    assert cam.start is not None
    frames = open_video(DEMO_CLIP, camera_id="km39", start=cam.start, analysis_fps=5)
    offline: list[Crossing] = []
    process_frames(frames, detector, stages, offline.extend)
    assert stages.gate is not None and stages.gate.stats().skipped > 0, "the cascade skipped"

    writer = StorageWriter(cfg.storage.url)
    session = LiveSession(cfg, cfg.cameras, writer, detector)
    report = session.run(LiveOptions(), threading.Event())
    writer.close()
    with open_database(cfg.storage.url).connect() as conn:
        live = list(conn.execute(select(CrossingRow.line_id, CrossingRow.direction_name)))
    key = lambda c: (c.line_id, c.direction_name)  # noqa: E731
    assert sorted(map(tuple, live)) == sorted(map(key, offline))
    assert report.frames == 375, "skipped frames are analysed frames of the coverage"


def test_cameras_to_run_must_have_a_source(cfg: AppConfig) -> None:
    assert [c.id for c in select_cameras(cfg, [])] == ["f0", "f1"]
    bare = cfg.model_copy(update={"cameras": (CameraConfig(id="x"),)})
    with pytest.raises(ConfigError, match="no camera with a `source`"):
        select_cameras(bare, [])
    with pytest.raises(ConfigError, match="camera 'x': no `source`"):
        select_cameras(bare, ["x"])
    with pytest.raises(ConfigError, match="unknown camera 'y'"):
        select_cameras(cfg, ["y"])
