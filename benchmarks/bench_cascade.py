"""Skip rate of the cheap-first cascade, and whether the counts stay the same, on real clips.

Each clip is processed twice through ``process_frames`` with the same model: cascade off, then on
(a horizontal line at y = 0.6 unless a config is given). Reports frames, skipped frames, detector
time and whether the crossings are identical.

    python benchmarks/bench_cascade.py demo/km39-siang.mp4 ../shared/data/videos/*.mp4
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

from truckcount.config import AppConfig, CameraConfig, CascadeConfig, DetectorConfig
from truckcount.detector.infer import Detector
from truckcount.ingest.files import open_video
from truckcount.pipeline import build_stages, process_frames
from truckcount.types import Crossing, RunInfo

log = logging.getLogger("bench_cascade")
START = datetime(2024, 1, 1, tzinfo=UTC)


def count(
    cfg: AppConfig, detector: Detector, clip: Path
) -> tuple[list[Crossing], dict[str, object]]:
    """Crossings of one pass over ``clip`` and what the pass cost."""
    camera = cfg.cameras[0]
    run = RunInfo("bench", camera.id, str(clip), detector.version, cfg.digest(), START)
    stages = build_stages(cfg, camera, run)
    crossings: list[Crossing] = []
    frames = open_video(clip, camera_id=camera.id, start=START, analysis_fps=camera.analysis_fps)
    t0 = time.perf_counter()
    stats = process_frames(frames, detector, stages, crossings.extend)
    info: dict[str, object] = {
        "frames": stats.frames,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if stages.gate is not None:
        g = stages.gate.stats()
        info |= {
            "skipped": g.skipped,
            "skip_rate": round(g.skip_rate, 4),
            "audited": g.audited,
            "turned_off": g.disabled,
        }
    return crossings, info


def counted(crossings: list[Crossing], cls: str | None = None) -> set[tuple[str, str, str, str]]:
    """What a count is made of: line, class, direction and time of each crossing (track ids and
    track scores may differ when frames are skipped without changing any count)."""
    return {
        (c.line_id, c.class_name.value, c.direction.value, c.ts.isoformat())
        for c in crossings
        if cls is None or c.class_name.value == cls
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="+", type=Path)
    parser.add_argument("--fps", type=float, default=5.0, help="analysis frames per second")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    log.setLevel(logging.INFO)
    detector = Detector(DetectorConfig())
    camera = CameraConfig(id="cam", analysis_fps=args.fps)
    rows = []
    for clip in args.clips:
        off, info_off = count(AppConfig(cameras=(camera,)), detector, clip)
        cfg_on = AppConfig(cameras=(camera,), cascade=CascadeConfig(enabled=True))
        on, info_on = count(cfg_on, detector, clip)
        rows.append(
            {
                "clip": clip.name,
                "crossings": len(off),
                "identical": counted(off) == counted(on),
                "trucks_identical": counted(off, "truck") == counted(on, "truck"),
                "lost": sorted(counted(off) - counted(on)),
                "added": sorted(counted(on) - counted(off)),
                "off": info_off,
                "on": info_on,
            }
        )
    log.info("%s", json.dumps({"model": detector.version, "clips": rows}, indent=1))


if __name__ == "__main__":
    main()
