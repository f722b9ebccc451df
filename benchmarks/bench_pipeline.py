"""Throughput of the pipeline on the demo clip: decode only, detector at batch 1 and 8, end to end.

Usage: .venv/bin/python benchmarks/bench_pipeline.py [--clip demo/km39-siang.mp4] [--repeat 3]
Prints one JSON object. The batch-1 detector is the baseline the batched one is compared against,
measured in the same process.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from truckcount.config import AppConfig, DetectorConfig, LineConfig
from truckcount.detector.infer import Detector
from truckcount.ingest import open_video
from truckcount.pipeline import build_stages, process_frames
from truckcount.types import RunInfo

START = datetime(2021, 11, 15, 6, 17, 9, tzinfo=UTC)


def _frames(clip: Path) -> list:
    return list(open_video(clip, camera_id="bench", start=START, analysis_fps=5.0))


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clip", type=Path, default=Path("demo/km39-siang.mp4"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    decode_s = _best(lambda: _frames(args.clip), args.repeat)
    frames = _frames(args.clip)
    n = len(frames)
    result: dict[str, object] = {
        "clip": str(args.clip),
        "frames": n,
        "media_seconds": (frames[-1].ts - frames[0].ts).total_seconds() + 0.2,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
        "decode_fps": round(n / decode_s, 1),
    }
    for batch in (1, 8):
        det = Detector(DetectorConfig(batch_size=batch))
        det.predict(frames[:batch])  # warm-up
        secs = _best(lambda d=det: d.predict(frames), args.repeat)
        result[f"detector_batch{batch}_fps"] = round(n / secs, 1)
    cfg = AppConfig.model_validate(
        {"cameras": [{"id": "bench", "lines": [LineConfig().model_dump(by_alias=True)]}]}
    )
    det = Detector(cfg.detector)
    run = RunInfo("bench", "bench", str(args.clip), det.version, cfg.digest(), START)

    def end_to_end() -> None:
        frames_iter = open_video(args.clip, camera_id="bench", start=START, analysis_fps=5.0)
        process_frames(frames_iter, det, build_stages(cfg, cfg.cameras[0], run), lambda c: None)

    e2e = _best(end_to_end, args.repeat)
    result["end_to_end_fps"] = round(n / e2e, 1)
    result["real_time_factor"] = round(float(result["media_seconds"]) / e2e, 2)  # type: ignore[arg-type]
    result["batch8_over_batch1"] = round(
        float(result["detector_batch8_fps"]) / float(result["detector_batch1_fps"]),
        2,  # type: ignore[arg-type]
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
