"""The shipped detector on a GPU: frames/s at each batch and precision, and the pipeline's counts.

Measures, on real frames of the demo clip (resized to the model's 320x320 input):

* **network**: the network alone on input already on the GPU (fp32 with TF32 convolutions, bf16
  autocast, fp16 weights), batch 1 to 512, and the best batch replayed as a CUDA graph;
* **detector**: what the pipeline calls per batch, uint8 frames in host memory to boxes in host
  memory (transfer, normalisation, network, peak decoding, one NMS per batch), against the same
  path with one NMS and one device-to-host copy per image (how it decoded before);
* **full frames**: ``Detector.predict`` on the clip's 640x360 frames, the CPU resize included;
* **counts**: ``run_recording`` on the demo clip with the detector on the GPU and on the CPU, the
  stored crossings compared.

    python benchmarks/bench_gpu.py --json gpu.json [--seconds 2] [--skip-counts]

Runs on CPU too (``--device cpu``: a smoke run of the same code; its figures mean little).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from truckcount.detector.augment import to_tensor
from truckcount.detector.engine import autocast, predict
from truckcount.detector.infer import load_model
from truckcount.detector.model import TruckNet, decode

log = logging.getLogger("bench_gpu")
REPO = Path(__file__).resolve().parent.parent
CLIP = REPO / "demo" / "km39-siang.mp4"
WEIGHTS = REPO / "detector" / "weights" / "truckcount.pt"
T0 = datetime(2021, 11, 15, 6, 17, 9, tzinfo=UTC)
DEPLOYED = {"score_threshold": 0.1, "nms_iou": 0.6, "max_detections": 100, "class_agnostic": True}


def clip_frames(limit: int = 375) -> list[np.ndarray]:
    """The demo clip's frames (BGR, 640x360), decoded with OpenCV."""
    cap = cv2.VideoCapture(str(CLIP))
    frames: list[np.ndarray] = []
    while len(frames) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    if not frames:
        raise RuntimeError(f"no frames read from {CLIP}")
    return frames


def cycled(frames: list[np.ndarray], n: int) -> list[np.ndarray]:
    return [frames[i % len(frames)] for i in range(n)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(fn: Callable[[], object], device: torch.device, seconds: float) -> float:
    """Calls per second of ``fn`` over at least ``seconds`` after three warm-up calls."""
    for _ in range(3):
        fn()
    sync(device)
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or calls < 3:
        fn()
        calls += 1
        if calls % 8 == 0 or elapsed >= seconds:
            sync(device)
    sync(device)
    return calls / (time.perf_counter() - start)


def network_rates(
    model: TruckNet, small: list[np.ndarray], device: torch.device, batches: list[int], sec: float
) -> list[dict[str, Any]]:
    rows = []
    half = TruckNet(model.cfg).to(device).to(memory_format=torch.channels_last).eval()
    half.load_state_dict(model.state_dict())
    half = half.half()
    for batch in batches:
        x = to_tensor(cycled(small, batch), device)
        xh = x.half()
        runs: dict[str, Callable[[], object]] = {
            "fp32": functools.partial(model, x),
            "bf16": functools.partial(_autocast_call, model, x, device),
            "fp16": functools.partial(half, xh),
        }
        for precision, fn in runs.items():
            if device.type == "cpu" and precision == "fp16":
                continue
            with torch.inference_mode():
                fps = batch * rate(fn, device, sec)
            rows.append({"batch": batch, "precision": precision, "frames_per_s": round(fps, 1)})
            log.info("network batch %d %s: %.0f frames/s", batch, precision, fps)
    return rows


def _autocast_call(model: TruckNet, x: torch.Tensor, device: torch.device) -> object:
    with autocast(device, True):
        return model(x)


def graph_rate(
    model: TruckNet, small: list[np.ndarray], device: torch.device, batch: int, sec: float
) -> dict[str, Any]:
    """The network at one batch, fp16 weights, captured once as a CUDA graph and replayed."""
    half = TruckNet(model.cfg).to(device).to(memory_format=torch.channels_last).eval()
    half.load_state_dict(model.state_dict())
    half = half.half()
    static = to_tensor(cycled(small, batch), device).half()
    with torch.inference_mode():
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            for _ in range(3):
                half(static)
        torch.cuda.current_stream(device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            half(static)
        fps = batch * rate(graph.replay, device, sec)
    log.info("network batch %d fp16 CUDA graph: %.0f frames/s", batch, fps)
    return {"batch": batch, "precision": "fp16", "cuda_graph": True, "frames_per_s": round(fps, 1)}


def per_image_decode(
    model: TruckNet, images: list[np.ndarray], device: torch.device, amp: bool
) -> list[tuple[np.ndarray, ...]]:
    """The detector path before batched decoding: float pixels converted on the host, then peak
    decoding, NMS and three device-to-host copies one image at a time."""
    with torch.inference_mode():
        x = to_tensor(images).to(device).contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            out = model(x)
        results: list[tuple[np.ndarray, ...]] = []
        for i in range(len(images)):
            [(bx, sc, cl)] = decode({k: v[i : i + 1] for k, v in out.items()}, **DEPLOYED)
            results.append((bx.cpu().numpy(), sc.cpu().numpy(), cl.cpu().numpy()))
    return results


def detector_rates(
    model: TruckNet, small: list[np.ndarray], device: torch.device, batches: list[int], sec: float
) -> list[dict[str, Any]]:
    rows = []
    for batch in batches:
        images = cycled(small, batch)
        for amp in (False, True):
            precision = "bf16" if amp else "fp32"

            def batched(images: list[np.ndarray] = images, amp: bool = amp) -> object:
                return predict(model, images, device, batch_size=len(images), amp=amp, **DEPLOYED)

            def each(images: list[np.ndarray] = images, amp: bool = amp) -> object:
                return per_image_decode(model, images, device, amp)

            fps = batch * rate(batched, device, sec)
            base = batch * rate(each, device, sec)
            rows.append(
                {
                    "batch": batch,
                    "precision": precision,
                    "frames_per_s": round(fps, 1),
                    "per_image_nms_frames_per_s": round(base, 1),
                    "ratio": round(fps / base, 2),
                }
            )
            log.info(
                "detector batch %d %s: %.0f frames/s (per-image NMS %.0f)",
                batch,
                precision,
                fps,
                base,
            )
    return rows


def full_frame_rates(
    frames: list[np.ndarray], device: torch.device, batches: list[int], sec: float
) -> list[dict[str, Any]]:
    from truckcount.config import DetectorConfig
    from truckcount.detector.infer import Detector
    from truckcount.types import Frame

    rows = []
    for batch in batches:
        for precision in ("fp32", "bf16"):
            det = Detector(
                DetectorConfig(device=device.type, batch_size=batch, precision=precision)
            )
            chunk = [Frame("km39", T0, i, img) for i, img in enumerate(cycled(frames, batch))]
            fps = batch * rate(functools.partial(det.predict, chunk), device, sec)
            rows.append({"batch": batch, "precision": precision, "frames_per_s": round(fps, 1)})
            log.info("Detector.predict 640x360 batch %d %s: %.0f frames/s", batch, precision, fps)
    return rows


def counts_on(device: str, batch: int, precision: str) -> dict[str, Any]:
    """Run the demo clip through the pipeline with the detector on ``device``; stored crossings."""
    from sqlalchemy import text

    from truckcount.config import load_config
    from truckcount.pipeline import run_recording
    from truckcount.storage.database import open_database

    cfg = load_config(REPO / "demo" / "km39.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'counts.db'}"
        cfg = cfg.model_copy(
            update={
                "storage": cfg.storage.model_copy(update={"url": url}),
                "detector": cfg.detector.model_copy(
                    update={"device": device, "batch_size": batch, "precision": precision}
                ),
            }
        )
        start = time.perf_counter()
        _, stats = run_recording(cfg, "km39", source=str(CLIP))
        seconds = time.perf_counter() - start
        engine = open_database(url)
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT track_id, direction_name, class_name FROM crossings "
                    "ORDER BY ts, track_id"
                )
            ).all()
        engine.dispose()
    by_cell: dict[str, int] = {}
    for _, direction, cls in rows:
        by_cell[f"{cls} {direction}"] = by_cell.get(f"{cls} {direction}", 0) + 1
    log.info(
        "counts on %s (%s, batch %d): %s in %.1f s", device, precision, batch, by_cell, seconds
    )
    return {
        "device": device,
        "precision": precision,
        "batch": batch,
        "frames": stats.frames,
        "seconds": round(seconds, 2),
        "counts": dict(sorted(by_cell.items())),
        "crossings": [list(map(str, r)) for r in rows],
    }


def environment(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info |= {"gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1)}
    return info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, required=True, help="write the results here")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per figure")
    parser.add_argument("--batches", default="1,8,32,128,256,512")
    parser.add_argument("--skip-counts", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    batches = [int(b) for b in args.batches.split(",")]
    frames = clip_frames()
    small = [cv2.resize(f, (320, 320), interpolation=cv2.INTER_AREA) for f in frames]
    model, version = load_model(WEIGHTS, device)
    results: dict[str, Any] = {"environment": environment(device), "model": version}

    def save() -> None:
        args.json.write_text(json.dumps(results, indent=1))

    results["network"] = network_rates(model, small, device, batches, args.seconds)
    save()
    if device.type == "cuda":
        best = max(results["network"], key=lambda r: r["frames_per_s"])
        results["network_graph"] = graph_rate(model, small, device, best["batch"], args.seconds)
        save()
    big = [b for b in batches if b > 1] or batches
    results["detector"] = detector_rates(model, small, device, big, args.seconds)
    save()
    results["full_frames"] = full_frame_rates(frames, device, big[-3:], args.seconds)
    save()
    if not args.skip_counts:
        results["counts"] = [
            counts_on(args.device, 8, "fp32"),
            counts_on(args.device, 64, "fp32"),
            counts_on("cpu", 8, "fp32"),
        ]
        save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
