"""The service's live runtime: the live session in a thread, its state and its metrics.

A camera whose source is a file runs through the same live session (a file reader instead of a
stream reader), so the demo clip exercises the whole path without a stream server: frames are
counted, the detector is timed, crossings are counted as they are stored, and the camera's
state is what ``GET /cameras`` reports.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from truckcount.api import ApiSettings, create_app
from truckcount.config import load_config
from truckcount.service_live import LiveRuntime, live_cameras
from truckcount.storage import count_crossings, open_database

ROOT = Path(__file__).resolve().parent.parent
DEMO_CLIP = ROOT / "demo" / "km39-siang.mp4"
DEMO_CONFIG = ROOT / "demo" / "km39.yaml"


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def config(tmp_path: Path) -> Path:
    text = DEMO_CONFIG.read_text().replace("sqlite:///demo.db", f"sqlite:///{tmp_path}/tc.db")
    text = text.replace("source: km39-siang.mp4", f"source: {DEMO_CLIP}")
    text = text.replace("analysis_fps: 5", "analysis_fps: 2")
    path = tmp_path / "km39.yaml"
    path.write_text(text)
    return path


def test_only_streams_and_devices_run_live(config: Path) -> None:
    cfg = load_config(config)
    assert live_cameras(cfg) == []
    cams = tuple(
        cfg.cameras[0].model_copy(update={"id": f"c{i}", "source": src})
        for i, src in enumerate(["rtsp://cam.example/stream", "/dev/video0", str(DEMO_CLIP)])
    )
    assert [c.id for c in live_cameras(cfg.model_copy(update={"cameras": cams}))] == ["c0", "c1"]


@pytest.mark.slow
def test_live_runtime_reports_state_and_counts_metrics(config: Path) -> None:
    cfg = load_config(config)
    batches = _metric("truckcount_detector_batch_size_count")
    analysed = _metric("truckcount_frames_analysed_total", camera="km39")
    runtime = LiveRuntime(cfg, cfg.cameras)
    assert runtime.camera_states()["km39"].state == "connecting"
    runtime.start()
    deadline = time.monotonic() + 240
    while runtime.camera_states()["km39"].state != "ended":
        assert time.monotonic() < deadline, "the clip did not finish"
        time.sleep(0.5)
    state = runtime.camera_states()["km39"]
    runtime.stop()

    assert state.reconnects == 0 and state.frames_dropped == 0, "a file never drops"
    assert state.last_frame_at is not None
    assert "2021-11-15T06:18:23" <= state.last_frame_at.isoformat() < "2021-11-15T06:18:24"
    frames = _metric("truckcount_frames_analysed_total", camera="km39") - analysed
    assert frames == 150, "75 s at 2 frames per second"
    assert _metric("truckcount_frames_read_total", camera="km39") >= 150
    assert _metric("truckcount_detector_batch_size_count") > batches

    engine = open_database(cfg.storage.url, create=False)
    stored = count_crossings(engine, "km39")
    counted = sum(
        _metric("truckcount_crossings_total", camera="km39", line="y60", class_name=cls,
                direction=d)
        for cls in ("truck", "bus", "car")
        for d in ("toward_camera", "away_from_camera")
    )  # fmt: skip
    assert stored > 0 and counted == stored, "every stored crossing is counted once"

    client = TestClient(create_app(ApiSettings(cfg.storage.url, cfg, live=runtime), engine))
    (cam,) = client.get("/cameras").json()["cameras"]
    assert cam["state"] == "ended" and cam["reconnects"] == 0
    assert cam["last_run_status"] == "complete"
    engine.dispose()
