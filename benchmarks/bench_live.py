"""Live ingest: outage cycles against a real RTSP server, and 4 live 720p streams, one detector.

Usage:
    .venv/bin/python benchmarks/bench_live.py resilience [--cycles 10]
    .venv/bin/python benchmarks/bench_live.py throughput [--streams 4] [--seconds 60]
        [--precision fp32|bf16] [--batch-size 8] [--source-fps 25]

``resilience``: one camera reader (no detector) on ``rtsp://.../clip`` from ``tests/rtsp_server.py``
(GStreamer, demo clip looped). Each cycle kills the server (SIGKILL), restarts it 3 s later,
freezes it (SIGSTOP) for 8 s and resumes it (SIGCONT). Measured: stall detection (SIGSTOP -> the
outage is recorded), reconnect time (server back -> first frame), crashes (reader gone, or an
exception). ``throughput``: the demo clip upscaled to 1280x720 H.264 at the camera's frame rate
(``--source-fps``, 25 by default), served on N mounts, N cameras analysed at 5 fps through one
``LiveSession`` (batched detector, SQLite); frames analysed vs offered, frames dropped, and this
process's CPU use. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.live_servers import DEMO_CLIP, RtspServer
from truckcount.config import AppConfig, CameraConfig, DetectorConfig, StorageConfig
from truckcount.detector.infer import Detector
from truckcount.ingest.queues import FrameQueue, Outage
from truckcount.ingest.reader import CameraReader
from truckcount.live import LiveOptions, LiveSession
from truckcount.storage.writer import StorageWriter
from truckcount.types import Frame

FAST = {"read_timeout_s": 2.0, "open_timeout_s": 5.0, "stall_timeout_s": 10.0}


class Watch:
    """Drains one reader's queue on a thread, noting when frames and outages arrive."""

    def __init__(self, queue: FrameQueue) -> None:
        self.queue = queue
        self.last_frame = 0.0
        self.events: list[tuple[float, Outage]] = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        while not self.queue.closed:
            with self.queue.cond:
                self.queue.cond.wait(0.05)
                while (item := self.queue.pop()) is not None:
                    now = time.monotonic()
                    if isinstance(item, Frame):
                        self.last_frame = now
                    elif isinstance(item, Outage):
                        self.events.append((now, item))

    def first_frame_after(self, t: float, limit_s: float = 30) -> float | None:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self.last_frame > t:
                return self.last_frame - t
            time.sleep(0.02)
        return None

    def outage_after(self, t: float, limit_s: float = 30) -> float | None:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            found = [at for at, o in self.events if at > t and o.end is None]
            if found:
                return found[0] - t
            time.sleep(0.02)
        return None


def resilience(cycles: int) -> dict[str, object]:
    """Kill/restart and freeze/resume cycles; see the module docstring."""
    server = RtspServer(loops=4).start()
    cam = CameraConfig(
        id="bench", source=server.url(), reconnect_min_s=0.2, reconnect_max_s=2.0, **FAST
    )
    queue = FrameQueue("bench", 32, drop_oldest=True, cond=threading.Condition())
    reader = CameraReader(cam, queue, seed=0)
    reader.start()
    watch = Watch(queue)
    reconnect, stall, resumed, crashes = [], [], [], 0
    try:
        assert watch.first_frame_after(time.monotonic() - 1) is not None
        for _ in range(cycles):
            time.sleep(3)
            server.kill()
            time.sleep(3)
            server.start()
            reconnect.append(watch.first_frame_after(time.monotonic()))
            time.sleep(3)
            frozen = time.monotonic()
            server.freeze()
            stall.append(watch.outage_after(frozen))
            time.sleep(max(0.0, 8 - (time.monotonic() - frozen)))
            server.resume()
            resumed.append(watch.first_frame_after(time.monotonic()))
            crashes += int(not any(t.name.startswith("read-bench") for t in threading.enumerate()))
    finally:
        reader.stop()
        server.stop()
    return {
        "cycles": cycles,
        "crashes": crashes,
        "outages_recorded": len(reader.outages),
        "read_timeout_s": cam.read_timeout_s,
        "reconnect_after_restart_s": _summary(reconnect),
        "stall_detection_s": _summary(stall),
        "reconnect_after_resume_s": _summary(resumed),
        "abandoned_readers": reader.abandoned,
    }


def _summary(values: list[float | None]) -> dict[str, object]:
    got = sorted(v for v in values if v is not None)
    if not got:
        return {"missed": len(values)}
    return {
        "median": round(got[len(got) // 2], 2),
        "max": round(got[-1], 2),
        "missed": len(values) - len(got),
    }


def upscale_clip(out: Path, fps: int, width: int = 1280, height: int = 720) -> Path:
    """The demo clip (5 fps) re-encoded at 1280x720 H.264 (libx264, a keyframe a second) at
    ``fps`` frames per second, each source frame repeated ``fps / 5`` times, as a camera would
    send it: the decoder then does the work of a real ``fps`` stream."""
    repeat = max(fps // 5, 1)
    with av.open(str(DEMO_CLIP)) as src, av.open(str(out), "w") as dst:
        stream = dst.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "g": str(fps), "bf": "0"}
        n = 0
        for frame in src.decode(video=0):
            big = frame.reformat(width=width, height=height, format="yuv420p")
            big.time_base = Fraction(1, fps)
            for _ in range(repeat):
                big.pts, n = n, n + 1
                dst.mux(stream.encode(big))
        dst.mux(stream.encode(None))
    return out


def throughput(
    streams: int, seconds: float, precision: str, batch_size: int, source_fps: int
) -> dict[str, object]:
    """N live 720p cameras analysed at 5 fps through one batched detector; see the module
    docstring."""
    work = Path(tempfile.mkdtemp(prefix="bench_live_"))
    clip = upscale_clip(work / "km39-720p.mp4", source_fps)
    server = RtspServer(clip, loops=20, mounts=streams).start()
    cams = tuple(
        CameraConfig(id=f"cam{i}", source=server.url(i), analysis_fps=5.0, queue_frames=16)
        for i in range(streams)
    )
    cfg = AppConfig(
        storage=StorageConfig(url=f"sqlite:///{work}/live.db"),
        detector=DetectorConfig(precision=precision, batch_size=batch_size),
        cameras=cams,
    )
    writer = StorageWriter(cfg.storage.url, work / "spool")
    session = LiveSession(cfg, cams, writer, Detector(cfg.detector))
    stop = threading.Event()
    threading.Timer(seconds, stop.set).start()
    cpu0, t0 = _cpu(), time.monotonic()
    try:
        report = session.run(LiveOptions(max_batch=batch_size), stop)
    finally:
        server.stop()
        writer.close()
    wall, cpu = time.monotonic() - t0, _cpu() - cpu0
    offered = streams * 5.0 * wall
    return {
        "streams": streams,
        "size": "1280x720",
        "source_fps": source_fps,
        "analysis_fps_each": 5.0,
        "seconds": round(wall, 1),
        "detector": {"precision": precision, "batch_size": batch_size, "device": "cpu"},
        "frames_analysed": report.frames,
        "frames_dropped": sum(s.dropped for s in report.segments),
        "frames_offered_approx": round(offered),
        "analysed_share": round(report.frames / offered, 3),
        "process_cpu_cores_used": round(cpu / wall, 2),
        "cpu_s_per_analysed_frame": round(cpu / max(report.frames, 1), 3),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "outages": len(report.outages),
    }


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    """Parse arguments and print one JSON object."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    res = sub.add_parser("resilience")
    res.add_argument("--cycles", type=int, default=10)
    thr = sub.add_parser("throughput")
    thr.add_argument("--streams", type=int, default=4)
    thr.add_argument("--seconds", type=float, default=60)
    thr.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    thr.add_argument("--batch-size", type=int, default=8)
    thr.add_argument("--source-fps", type=int, default=25, help="frame rate the camera sends")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.what == "resilience":
        result = resilience(args.cycles)
    else:
        result = throughput(
            args.streams, args.seconds, args.precision, args.batch_size, args.source_fps
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
