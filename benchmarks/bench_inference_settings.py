"""What the detector's inference settings cost: input size and mirrored averaging.

Runs ``Detector.predict`` (resize + network + decoding and NMS, frames in memory, decode
excluded) on frames of the demo clip for each ``detector.input_size`` x ``detector.flip``
setting, in one process, and prints frames per second and the cost relative to the first
setting (the model as trained) as one JSON object. Pair with the AP of each setting from
``truckcount eval detect DATA --split val --input-size N [--flip]`` (model card).

    .venv/bin/python benchmarks/bench_inference_settings.py [--sizes 320,384] [--runtime torch]
        [--weights FILE]   # e.g. an int8 file from ``truckcount export-onnx --input-size 384``
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from truckcount.config import DetectorConfig
from truckcount.detector.infer import Detector
from truckcount.ingest import open_video
from truckcount.types import Frame

log = logging.getLogger("bench_inference_settings")


def frames_per_second(detector: Detector, frames: list[Frame], repeat: int) -> float:
    """Best of ``repeat`` timed passes over ``frames``, after one warm-up batch."""
    detector.predict(frames[: detector.cfg.batch_size])
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        detector.predict(frames)
        best = min(best, time.perf_counter() - t0)
    return len(frames) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=Path("demo/km39-siang.mp4"))
    parser.add_argument("--frames", type=int, default=96)
    parser.add_argument("--sizes", default="320,384")
    parser.add_argument("--runtime", choices=["torch", "onnx"], default="torch")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--weights", type=Path, default=None, help="default: the shipped model")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    start = datetime(2000, 1, 1, tzinfo=UTC)
    clip = open_video(args.clip, camera_id="bench", start=start, analysis_fps=5.0)
    frames = [f for _, f in zip(range(args.frames), clip, strict=False)]
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for flip in (False, True):
            cfg = DetectorConfig(
                weights=args.weights or DetectorConfig().weights,
                classifier=None,
                input_size=size,
                flip=flip,
                runtime=args.runtime,
                batch_size=args.batch_size,
            )
            fps = frames_per_second(Detector(cfg), frames, args.repeat)
            rows.append({"input_size": size, "flip": flip, "frames_per_s": round(fps, 1)})
    for row in rows:
        row["cost_vs_first"] = round(rows[0]["frames_per_s"] / row["frames_per_s"], 2)
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
        "torch_threads": torch.get_num_threads(),
        "runtime": args.runtime,
        "batch_size": args.batch_size,
        "frames": len(frames),
        "frame_size": list(frames[0].size),
        "settings": rows,
    }
    log.warning("%s", json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
