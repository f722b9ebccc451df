"""Real network peers for the live-ingest tests: the GStreamer RTSP server and broken servers.

``RtspServer`` runs ``tests/rtsp_server.py`` with the system Python (which has PyGObject) and can
kill, restart, freeze (SIGSTOP) and resume (SIGCONT) it. ``JunkServer`` accepts TCP connections
and answers bytes that are no protocol at all, either at once or one byte a second.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import av
import pytest

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER = Path(__file__).resolve().parent / "rtsp_server.py"
DEMO_CLIP = Path(__file__).resolve().parent.parent / "demo" / "km39-siang.mp4"


def gstreamer_missing() -> str | None:
    """Why the RTSP server cannot run here, or None when it can."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} is not installed"
    probe = (
        "import gi; gi.require_version('GstRtspServer', '1.0'); "
        "from gi.repository import GstRtspServer"
    )
    result = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, check=False)
    return (
        None
        if result.returncode == 0
        else "gst-rtsp-server (gir1.2-gst-rtsp-server-1.0) is missing"
    )


def require_gstreamer() -> None:
    """Skip the test without GStreamer, except under ``CI=true``, where it fails."""
    why = gstreamer_missing()
    if why is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"the RTSP tests need GStreamer under CI=true: {why}")
    pytest.skip(why)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def looped_clip(clip: Path, loops: int) -> Path:
    """``clip`` ``loops`` times back to back in one MP4 (packets copied, timestamps shifted),
    made once per clip and count in the temporary folder."""
    out = Path(tempfile.gettempdir()) / f"truckcount-{clip.stem}-{clip.stat().st_size}-x{loops}.mp4"
    if out.exists():
        return out
    part = out.with_suffix(f".{os.getpid()}.part.mp4")
    with av.open(str(clip)) as probe:
        video = probe.streams.video[0]
        span = max(p.pts + (p.duration or 0) for p in probe.demux(video) if p.pts is not None)
    with av.open(str(part), "w") as dst:
        for i in range(loops):
            with av.open(str(clip)) as src:
                video = src.streams.video[0]
                if i == 0:
                    stream = dst.add_stream_from_template(video)
                for p in src.demux(video):
                    if p.dts is None:
                        continue  # the demuxer's end-of-stream marker
                    assert p.pts is not None, "a packet with a dts has a pts"
                    p.stream = stream
                    p.pts, p.dts = p.pts + i * span, p.dts + i * span
                    dst.mux(p)
    part.replace(out)
    return out


class RtspServer:
    """``rtsp://127.0.0.1:PORT/clip`` serving a clip in real time; see the module docstring."""

    def __init__(self, clip: Path = DEMO_CLIP, loops: int = 1, mounts: int = 1) -> None:
        self.port = free_port()
        # One file holding the clip ``loops`` times: the server's own looping (many demuxers
        # behind one concat) sometimes sent no media to a new client for seconds.
        served = looped_clip(clip, loops) if loops > 1 else clip
        self.args = [SYSTEM_PYTHON, str(SERVER), "--port", str(self.port), "--clip", str(served)]
        self.args += ["--mounts", str(mounts)]
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, mount: int = 0, user: str = "viewer:s3cret@") -> str:
        """The stream's URL (with credentials, which must never be logged)."""
        path = "clip" if mount == 0 else f"clip{mount}"
        return f"rtsp://{user}127.0.0.1:{self.port}/{path}"

    def start(self) -> RtspServer:
        """Start and wait until it listens."""
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if line != b"READY":
            raise RuntimeError(f"RTSP server did not start: {line!r}")
        return self

    def kill(self) -> None:
        """SIGKILL, as a crashing camera."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()

    def freeze(self) -> None:
        """SIGSTOP: connections stay open, nothing is sent."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Resume if frozen, then kill."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.kill()


class JunkServer:
    """Accepts TCP connections and sends junk; ``trickle`` sends one byte a second forever."""

    def __init__(self, trickle: bool = False) -> None:
        self.trickle = trickle
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self._closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                if not self.trickle:
                    conn.sendall(b"\x00\xffNOT RTSP AT ALL\r\n\r\n" + os.urandom(4096))
                    time.sleep(0.5)
                    return
                while not self._closed.is_set():
                    conn.sendall(b"x")
                    time.sleep(1.0)
            except OSError:
                return

    def close(self) -> None:
        """Stop accepting."""
        self._closed.set()
        self.sock.close()
