"""`truckcount serve` end to end: a recording dropped in the watch folder, SIGTERM, restarts.

The service runs as a real subprocess on a free loopback port with the shipped model. First it is
stopped while the recording is being processed (exit 0 within 10 s, the run closed as failed,
nothing counted); then restarted, it processes the recording; restarted once more with nothing
new, the counts and coverage stay exactly the same: complete and not duplicated.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from truckcount import service_store
from truckcount.cli import app as cli
from truckcount.storage import RunStatus, list_runs, open_database

ROOT = Path(__file__).resolve().parent.parent
DEMO_CLIP = ROOT / "demo" / "km39-siang.mp4"
DEMO_CONFIG = ROOT / "demo" / "km39.yaml"
RECORDING = "km39_20211115_131709.mp4"  # the clip's first frame, Jakarta time
STOP_WITHIN_S = 10.0

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, int]:
    """The demo config writing to a fresh database, with a watch folder scanned every second."""
    port = _free_port()
    text = DEMO_CONFIG.read_text().replace("sqlite:///demo.db", f"sqlite:///{tmp_path}/tc.db")
    text = text.replace("source: km39-siang.mp4", f"source: {DEMO_CLIP}")
    text = text.replace("analysis_fps: 5", "analysis_fps: 2")  # the same path, sooner
    text += (
        f"service:\n  port: {port}\n  watch_folder: inbox\n  watch_interval_s: 1\n  settle_s: 0.5\n"
    )
    config = tmp_path / "km39.yaml"
    config.write_text(text)
    (tmp_path / "inbox").mkdir()
    return config, tmp_path / "inbox", port


class Service:
    """``truckcount serve`` in a child process."""

    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.log = log
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("TRUCKCOUNT_API_TOKEN", None)
        with log.open("a") as out:
            argv = [sys.executable, "-m", "truckcount.cli", "serve", "--config", str(config)]
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        self.started = datetime.now(UTC)
        _wait(self._healthy, 90, f"service did not answer /health\n{self._tail()}")

    def _healthy(self) -> bool:
        assert self.proc.poll() is None, f"service exited early\n{self._tail()}"
        try:
            return httpx.get(self.base + "/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def get(self, path: str) -> Any:
        response = httpx.get(self.base + path, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def terminate(self) -> float:
        """SIGTERM; the seconds until the process exited with status 0."""
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"no exit 30 s after SIGTERM\n{self._tail()}") from None
        took = time.monotonic() - began
        assert code == 0, f"exit status {code}\n{self._tail()}"
        return took

    def _tail(self) -> str:
        return "\n".join(self.log.read_text().splitlines()[-30:])


def _wait(check: Callable[[], bool], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(message)


@pytest.fixture
def services() -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for svc in started:  # never leave a server behind, even when a check failed
        if svc.proc.poll() is None:
            svc.proc.kill()
            svc.proc.wait()


def _runs(url: str) -> list[Any]:
    engine = open_database(url, create=False)
    try:
        return list_runs(engine)
    finally:
        engine.dispose()


def test_watch_folder_sigterm_and_restarts(
    setup: tuple[Path, Path, int], services: list[Service], tmp_path: Path
) -> None:
    config, inbox, port = setup
    url = f"sqlite:///{tmp_path}/tc.db"
    log = tmp_path / "serve.log"
    first = Service(config, port, log)
    services.append(first)
    shutil.copyfile(DEMO_CLIP, tmp_path / "partial")
    (tmp_path / "partial").rename(inbox / RECORDING)  # dropped whole, as a recorder would
    _wait(lambda: any(r.status is RunStatus.RUNNING for r in _runs(url)), 120, "never started")

    assert first.terminate() < STOP_WITHIN_S, "stopped mid-recording within 10 s"
    assert [r.status for r in _runs(url)] == [RunStatus.FAILED], "the interrupted run is closed"

    second = Service(config, port, log)
    services.append(second)
    _wait(lambda: any(r.status is RunStatus.COMPLETE for r in _runs(url)), 300, "not processed")
    hourly = second.get("/counts?camera=km39&granularity=hour")
    daily = second.get("/counts?camera=km39")
    assert second.get("/cameras")["cameras"][0]["last_run_status"] == "complete"
    processed = 'truckcount_recordings_processed_total{camera="km39",outcome="processed"} 1.0'

    def scraped() -> str:
        return httpx.get(second.base + "/metrics", timeout=30).text

    # The run completes in the database a moment before its child process has exited.
    _wait(lambda: processed in scraped(), 60, "the processed recording is not in the metrics")
    assert 'truckcount_frames_analysed_total{camera="km39"} 150.0' in scraped(), "75 s at 2 fps"
    assert second.terminate() < STOP_WITHIN_S

    covered = {b["covered_s"] for b in daily}
    assert len(covered) == 1 and abs(covered.pop() - 75) <= 0.5, "the whole 75 s clip, once"
    assert sum(b["count"] for b in daily) > 0
    assert [b["count"] is None for b in hourly].count(False) == 2, "13:00 covered, both ways"

    third = Service(config, port, log)
    services.append(third)
    engine = open_database(url, create=False)

    def scanned_twice() -> bool:
        jobs = service_store.recent_jobs(engine, "watch-folder")
        return sum(j.started_at > third.started for j in jobs) >= 2

    _wait(scanned_twice, 60, "the watch folder was not scanned after the restart")
    assert third.get("/counts?camera=km39&granularity=hour") == hourly, "nothing duplicated"
    assert third.get("/counts?camera=km39") == daily
    assert third.terminate() < STOP_WITHIN_S
    engine.dispose()

    complete = [r for r in _runs(url) if r.status is RunStatus.COMPLETE]
    assert len(complete) == 1 and complete[0].source == str((inbox / RECORDING).resolve())
    printed = CliRunner().invoke(cli, ["counts", "--camera", "km39", "--config", str(config),
                                       "--format", "json"])  # fmt: skip
    assert json.loads(printed.stdout) == daily, "the API and the command line agree"
