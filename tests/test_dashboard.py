"""The dashboard in a real headless browser, against a server holding the demo clip's counts.

The demo clip is processed into a temporary SQLite database, the API serves it on a loopback
port, and Debian's Chromium loads the page, runs its script and dumps the resulting DOM. The
chart must show the API's counts: one bar per covered series, the 23 uncovered hours of the day
as gaps (not as zero bars), and the same total.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

from truckcount.api import ApiSettings, create_app
from truckcount.cli import app as cli
from truckcount.config import load_config

ROOT = Path(__file__).resolve().parent.parent
DEMO_CLIP = ROOT / "demo" / "km39-siang.mp4"
DEMO_CONFIG = ROOT / "demo" / "km39.yaml"

pytestmark = pytest.mark.slow


def chromium() -> str:
    """The system Chromium; skips without one, fails without one under CI=true."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is required under CI=true (scripts/test.sh installs it)")
        pytest.skip("no chromium on this machine")
    return found


def browse(url: str, *args: str) -> str:
    """Run headless Chromium on ``url`` with its scripts and fetches finished; its stdout."""
    argv = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        "--window-size=1200,900", "--virtual-time-budget=15000", *args, url,
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


class ChartParser(HTMLParser):
    """Collects the chart's <svg> attributes and its bar and gap rectangles."""

    def __init__(self) -> None:
        super().__init__()
        self.svg: dict[str, str] = {}
        self.bars: list[dict[str, str]] = []
        self.gaps: list[dict[str, str]] = []
        self.coverage: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "svg" and a.get("id") == "counts-chart":
            self.svg = a
        elif tag == "rect" and a.get("class") == "bar":
            self.bars.append(a)
        elif tag == "rect" and a.get("class") == "gap":
            self.gaps.append(a)
        elif tag == "rect" and a.get("class") == "coverage":
            self.coverage.append(a)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API on a free loopback port over the demo clip's counts."""
    tmp = tmp_path_factory.mktemp("dashboard")
    text = DEMO_CONFIG.read_text().replace("sqlite:///demo.db", f"sqlite:///{tmp}/demo.db")
    config = tmp / "km39.yaml"
    config.write_text(text.replace("source: km39-siang.mp4", f"source: {DEMO_CLIP}"))
    done = CliRunner().invoke(cli, ["run", str(DEMO_CLIP), "--camera", "km39", "-c", str(config)])
    assert done.exit_code == 0, done.output
    cfg = load_config(config)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(ApiSettings(cfg.storage.url, cfg))
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


def test_the_chart_shows_the_counts_with_gaps(server: str) -> None:
    buckets = httpx.get(f"{server}/counts?camera=km39&granularity=hour").json()
    starts = sorted({b["start"] for b in buckets})
    covered = {b["start"] for b in buckets if b["count"] is not None}
    total = sum(b["count"] for b in buckets if b["count"] is not None)
    assert len(starts) == 24 and len(covered) == 1 and total > 0

    page = ChartParser()
    page.feed(browse(f"{server}/dashboard/", "--dump-dom"))
    assert page.svg, "the chart was not drawn"
    assert int(page.svg["data-total"]) == total
    assert int(page.svg["data-gaps"]) == 23 and int(page.svg["data-buckets"]) == 24
    assert {g["data-start"] for g in page.gaps} == set(starts) - covered
    assert {b["data-start"] for b in page.bars} == covered, "bars only where video was analysed"
    shares = sorted(float(c["data-share"]) for c in page.coverage)
    assert shares == [0.0] * 23 + [round(75 / 3600, 4)], "75 s of one hour analysed"
    by_series = {b["data-series"]: int(b["data-count"]) for b in page.bars}
    assert by_series == {
        f"{b['line_id']}:{b['direction_name']}": b["count"]
        for b in buckets
        if b["count"] is not None and b["count"] > 0
    }


def test_the_page_renders_to_a_screenshot(server: str, tmp_path: Path) -> None:
    shot = tmp_path / "dashboard.png"
    browse(f"{server}/dashboard/", f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
