"""A real RTSP server (GStreamer gst-rtsp-server) that serves an H.264 MP4 clip, looped.

Run with the system Python, which has PyGObject (``gi``):

    /usr/bin/python3 tests/rtsp_server.py --port 8554 --clip demo/km39-siang.mp4 --loops 20

It serves ``rtsp://127.0.0.1:PORT/clip`` (and ``/clip1`` .. ``/clipN-1`` with ``--mounts N``),
paced in real time, without re-encoding: the clip is demuxed and its H.264 packets are
payloaded as they are. ``--loops`` plays it that many times back to back (GStreamer's ``concat``
keeps the timestamps running), after which the stream ends; with many loops a new client
sometimes got no media for seconds, so the tests serve a file that already holds the loops
(``live_servers.looped_clip``) with ``--loops 1``. Every client gets its own pipeline, starting
at the clip's first frame. Prints ``READY`` on stdout once it listens.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def launch_line(clip: str, loops: int) -> str:
    """The media pipeline: ``loops`` demuxed copies of the clip concatenated and payloaded."""
    parts = [f'filesrc location="{clip}" ! qtdemux ! queue ! c.' for _ in range(loops)]
    return (
        "( concat name=c ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 "
        + " ".join(parts)
        + " )"
    )


def main() -> int:
    """Serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clip", required=True)
    parser.add_argument("--loops", type=int, default=1)
    parser.add_argument("--mounts", type=int, default=1)
    args = parser.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    # Every client connection gets a thread of its own (the default pool has one thread for all).
    server.get_thread_pool().set_max_threads(16)
    mounts = server.get_mount_points()
    for i in range(args.mounts):
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch_line(args.clip, args.loops))
        factory.set_shared(False)
        mounts.add_factory("/clip" if i == 0 else f"/clip{i}", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on port {args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print("READY", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
