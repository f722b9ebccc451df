"""Our detector against the reference YOLOv8n, end to end on the same images, in one run.

Usage: .venv/bin/python benchmarks/bench_detector_vs_yolo.py [--yolo-python PY] [--images 64]
    [--repeat 3] [--int8 MODEL.int8.onnx]

Both sides get the same frames of the demo clip, already decoded into memory, and the same number
of threads. Ours: ``Detector.predict`` (resize to 320 + network + peak decoding + NMS, boxes back
in frame pixels) for eager fp32 / bf16 and ONNX Runtime fp32 (and int8 when given). Reference:
``yolo_reference.py`` under ``--yolo-python``, an interpreter with ultralytics installed outside
the project's environment (letterbox to 416 + network + NMS); without it the reference reads "not
measured". Prints one JSON object with images/s, the ratio of our best to the reference's best,
and the load average (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from truckcount.config import DetectorConfig
from truckcount.detector.infer import Detector, onnx_file
from truckcount.ingest import open_video
from truckcount.types import Frame

START = datetime(2021, 11, 15, 6, 17, 9, tzinfo=UTC)
REFERENCE = Path(__file__).with_name("yolo_reference.py")


def _rate(det: Detector, frames: list[Frame], repeat: int) -> float:
    det.predict(frames[: 2 * det.cfg.batch_size])  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        det.predict(frames)
        best = min(best, time.perf_counter() - t0)
    return round(len(frames) / best, 1)


def ours(frames: list[Frame], repeat: int, int8: Path | None) -> dict[str, float]:
    """images/s of our detector per runtime, precision and batch size."""
    onnx = onnx_file(DetectorConfig().weights)
    variants: dict[str, dict[str, object]] = {
        "ours_eager_fp32": {},
        "ours_eager_bf16": {"precision": "bf16"},
        "ours_ort_fp32": {"runtime": "onnx", "weights": onnx},
    }
    if int8 is not None:
        variants["ours_ort_int8"] = {"runtime": "onnx", "weights": int8}
    out = {}
    for name, kw in variants.items():
        for b in (1, 8):
            det = Detector(DetectorConfig.model_validate({**kw, "batch_size": b}))
            out[f"{name}_b{b}"] = _rate(det, frames, repeat)
    return out


def reference(python: str | None, frames: list[Frame], repeat: int) -> dict[str, object]:
    """images/s of the reference, from its own interpreter; "not measured" without one."""
    if not python or not Path(python).is_file():
        return {"yolo": f"not measured (no --yolo-python interpreter: {python})"}
    with tempfile.TemporaryDirectory() as tmp:
        npy = Path(tmp) / "images.npy"
        np.save(npy, np.stack([f.image for f in frames]))
        cmd = [python, str(REFERENCE), str(npy), "--repeat", str(repeat)]
        cmd += ["--threads", str(torch.get_num_threads())]
        env = {**os.environ, "YOLO_OFFLINE": "1"}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp, check=False)
    if done.returncode != 0:
        return {"yolo": f"not measured (reference failed: {done.stderr.strip()[-300:]})"}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clip", type=Path, default=Path("demo/km39-siang.mp4"))
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--yolo-python", default=None, help="interpreter with ultralytics")
    parser.add_argument("--int8", type=Path, default=None, help="int8 ONNX file to time too")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    frames = list(open_video(args.clip, camera_id="bench", start=START, analysis_fps=5.0))
    frames = frames[: args.images]
    result: dict[str, object] = {
        "images": f"{len(frames)} frames of {args.clip}, {frames[0].size[0]}x{frames[0].size[1]}",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "threads": torch.get_num_threads(),
        "load_average_before": os.getloadavg(),
    }
    result.update(ours(frames, args.repeat, args.int8))
    result.update(reference(args.yolo_python, frames, args.repeat))
    result["load_average_after"] = os.getloadavg()
    result.update(_ratios(result))
    json.dump(result, sys.stdout, indent=2)
    print()


def _ratios(r: dict[str, object]) -> dict[str, object]:
    ours_best = max(float(v) for k, v in r.items() if k.startswith("ours_"))  # type: ignore[arg-type]
    yolo = [float(v) for k, v in r.items() if k.startswith("yolo_") and isinstance(v, float)]
    if not yolo:
        return {"ours_best": ours_best}
    return {
        "ours_best": ours_best,
        "yolo_best": max(yolo),
        "ours_best_over_yolo_best": round(ours_best / max(yolo), 2),
    }


if __name__ == "__main__":
    main()
