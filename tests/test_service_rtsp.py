"""`truckcount serve` with a real RTSP camera and a watch folder, stopped and restarted.

A GStreamer RTSP server plays the demo clip in a loop as live camera ``km39``; a recording of a
second camera (``km39rec``) is dropped in the watch folder. The service runs, gets SIGTERM (exit 0
within 10 s), stays down a few seconds, runs again and gets SIGTERM again. Then: the recording was
processed exactly once; the live camera's segment runs are complete, do not overlap (nothing
counted twice) and leave a hole only around the downtime; no crossing is stored twice.
"""

from __future__ import annotations

import itertools
import shutil
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.live_servers import DEMO_CLIP, RtspServer, free_port, require_gstreamer
from tests.test_service_e2e import STOP_WITHIN_S, Service, _runs, _wait
from truckcount.storage import RunRecord, RunStatus, open_database

pytestmark = pytest.mark.slow
DOWNTIME_S = 5.0


@pytest.fixture
def services() -> Iterator[list[Service]]:
    """Services started by the test; killed at the end even when a check failed."""
    started: list[Service] = []
    yield started
    for svc in started:
        if svc.proc.poll() is None:
            svc.proc.kill()
            svc.proc.wait()


@pytest.fixture
def rtsp() -> Iterator[RtspServer]:
    require_gstreamer()
    server = RtspServer(loops=40).start()
    yield server
    server.stop()


def _config(tmp_path: Path, rtsp_url: str, port: int) -> Path:
    lines = "    lines: [{id: y60, a: [0.0, 0.6], b: [1.0, 0.6]}]\n"
    config = tmp_path / "cams.yaml"
    config.write_text(
        f"storage:\n  url: sqlite:///{tmp_path}/tc.db\n"
        "cameras:\n"
        f"  - id: km39\n    source: '{rtsp_url}'\n    timezone: Asia/Jakarta\n"
        f"    analysis_fps: 2\n    segment_seconds: 10\n{lines}"
        "  - id: km39rec\n    timezone: Asia/Jakarta\n    analysis_fps: 2\n"
        f"{lines}"
        f"service:\n  port: {port}\n  watch_folder: inbox\n  watch_interval_s: 1\n"
        "  settle_s: 0.5\n"
    )
    (tmp_path / "inbox").mkdir()
    return config


def _complete(url: str, camera: str) -> list[RunRecord]:
    runs = [r for r in _runs(url) if r.camera_id == camera and r.status is RunStatus.COMPLETE]
    return sorted(runs, key=lambda r: r.media_start)


def test_live_camera_and_watch_folder_survive_restarts(
    rtsp: RtspServer, services: list[Service], tmp_path: Path
) -> None:
    port = free_port()
    config = _config(tmp_path, rtsp.url(), port)
    url = f"sqlite:///{tmp_path}/tc.db"
    log = tmp_path / "serve.log"

    first = Service(config, port, log)
    services.append(first)
    shutil.copyfile(DEMO_CLIP, tmp_path / "partial")
    (tmp_path / "partial").rename(tmp_path / "inbox" / "km39rec_20211115_131709.mp4")
    _wait(lambda: len(_complete(url, "km39rec")) == 1, 300, "recording not processed")
    _wait(lambda: len(_complete(url, "km39")) >= 2, 120, "no live segments stored")
    assert first.terminate() < STOP_WITHIN_S
    before = _complete(url, "km39")
    down_at = before[-1].media_end

    time.sleep(DOWNTIME_S)
    second = Service(config, port, log)
    services.append(second)
    _wait(lambda: len(_complete(url, "km39")) >= len(before) + 2, 120, "live did not resume")
    assert second.terminate() < STOP_WITHIN_S

    live = _complete(url, "km39")
    for a, b in itertools.pairwise(live):
        assert a.media_end <= b.media_start, "segments never overlap: nothing counted twice"
    resumed = live[len(before)].media_start
    hole = resumed - down_at
    assert timedelta(seconds=DOWNTIME_S) <= hole < timedelta(seconds=120), "a hole, the downtime"
    assert len(_complete(url, "km39rec")) == 1, "the recording is processed once, not again"

    engine = open_database(url, create=False)
    with engine.connect() as conn:
        dupes = conn.execute(
            text(
                # one vehicle's crossing; two vehicles may cross in the same frame
                "SELECT COUNT(*) FROM (SELECT camera_id, line_id, track_id, ts, direction "
                "FROM crossings GROUP BY camera_id, line_id, track_id, ts, direction "
                "HAVING COUNT(DISTINCT attempt_id) > 1) AS d"
            )
        ).scalar_one()
    engine.dispose()
    assert dupes == 0, "no crossing is stored by two runs"
