"""Live HTTP sources against real HTTP servers: MJPEG (multipart JPEG) and HLS (a playlist of
MPEG-TS segments written by FFmpeg's HLS muxer), both read through ``open_source``."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from itertools import islice, pairwise
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from truckcount.config import CameraConfig
from truckcount.ingest import open_source

BOUNDARY = "frameboundary"


class MjpegHandler(BaseHTTPRequestHandler):
    """``multipart/x-mixed-replace`` JPEG frames at 10 fps, as IP cameras serve /video.mjpg."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.end_headers()
        try:
            for i in range(200):
                img = np.full((120, 160, 3), (i * 9) % 255, np.uint8)
                jpeg = cv2.imencode(".jpg", img)[1].tobytes()
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                head += f"Content-Length: {len(jpeg)}\r\n\r\n"
                self.wfile.write(head.encode() + jpeg + b"\r\n")
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            return

    def log_message(self, *args: object) -> None:
        """Quiet."""


def serve(handler: type[BaseHTTPRequestHandler] | functools.partial) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def mjpeg_port() -> Iterator[int]:
    yield from serve(MjpegHandler)


@pytest.fixture
def hls_port(tmp_path: Path) -> Iterator[int]:
    """A 6 s, 5 fps H.264 stream cut into 2 s HLS segments, served from a folder."""
    with av.open(str(tmp_path / "index.m3u8"), "w", format="hls", options={"hls_time": "2"}) as out:
        stream = out.add_stream("libx264", rate=Fraction(5))
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.options = {"g": "5"}
        for i in range(30):
            img = np.full((120, 160, 3), i * 8, np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")))
        out.mux(stream.encode(None))
    quiet = type("Quiet", (SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    yield from serve(functools.partial(quiet, directory=str(tmp_path)))


@pytest.mark.slow
def test_mjpeg_over_http_is_read_on_the_receive_clock(mjpeg_port: int) -> None:
    cam = CameraConfig(
        id="yard", source=f"http://u:pw@127.0.0.1:{mjpeg_port}/video.mjpg", input_format="mpjpeg"
    )
    frames = list(islice(open_source(cam), 10))
    assert len(frames) == 10 and frames[0].image.shape == (120, 160, 3)
    spans = [(b.ts - a.ts).total_seconds() for a, b in pairwise(frames)]
    assert all(s >= 0 for s in spans), "never backwards"
    assert 0.9 < (frames[-1].ts - frames[0].ts).total_seconds() < 4.0, "about 0.2 s apart"


def test_hls_playlist_over_http_keeps_the_media_spacing_within_the_clock_tolerance(
    hls_port: int,
) -> None:
    """A finished (VOD) playlist downloads faster than real time: frames keep their 0.2 s
    media spacing until 2 s ahead of the receive clock, then the clock re-anchors, never back."""
    cam = CameraConfig(id="cdn", source=f"http://127.0.0.1:{hls_port}/index.m3u8", analysis_fps=5)
    frames = list(open_source(cam))
    assert len(frames) == 30
    step = [(b.ts - a.ts).total_seconds() for a, b in pairwise(frames)]
    assert step[:9] == pytest.approx([0.2] * 9, abs=1e-3)
    assert min(step) >= 0
    assert frames[-1].ts - datetime.now(UTC) < timedelta(seconds=2.5), "not far in the future"
