"""The reference detector's end-to-end speed: stock Ultralytics YOLOv8n, untrained, from its yaml.

Run by ``bench_detector_vs_yolo.py`` with an interpreter that has ultralytics installed (kept out of
the project's environment). Speed does not depend on training, so the network is built from
``yolov8n.yaml`` without weights. Timed per image set: letterbox to the square input, BGR->RGB,
scale to [0, 1], the network (eager PyTorch with Conv+BN fused as Ultralytics' predictor does, or
ONNX Runtime on its own ONNX export), and Ultralytics' NMS (conf 0.25, IoU 0.7, its defaults).

Usage: PYTHON yolo_reference.py IMAGES.npy [--imgsz 416] [--repeat 3] [--threads 2]
Prints one JSON object with images/s per variant.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")

import numpy as np
import onnxruntime as ort
import torch
import ultralytics
from ultralytics import YOLO
from ultralytics.data.augment import LetterBox
from ultralytics.utils.nms import non_max_suppression


def _letterbox(images: np.ndarray, size: int) -> torch.Tensor:
    box = LetterBox(new_shape=(size, size), auto=False)
    batch = np.stack([box(image=im) for im in images])[..., ::-1].transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(batch)).float() / 255


def _run_all(images: np.ndarray, batch: int, size: int, forward: Callable) -> None:
    for i in range(0, len(images), batch):
        x = _letterbox(images[i : i + batch], size)
        non_max_suppression(forward(x), conf_thres=0.25, iou_thres=0.7, max_det=300)


def _rate(images: np.ndarray, batch: int, size: int, forward: Callable, repeat: int) -> float:
    _run_all(images[: 2 * batch], batch, size, forward)  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        _run_all(images, batch, size, forward)
        best = min(best, time.perf_counter() - t0)
    return round(len(images) / best, 1)


def _session(path: str, threads: int, spin: str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def _forward(sess: ort.InferenceSession) -> Callable:
    name = sess.get_inputs()[0].name

    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(sess.run(None, {name: x.numpy()})[0])

    return forward


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("images", type=Path)
    parser.add_argument("--imgsz", type=int, default=416)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = np.load(args.images)
    yolo = YOLO("yolov8n.yaml")
    net = yolo.model.fuse().eval()
    out: dict[str, object] = {"ultralytics": ultralytics.__version__, "torch": torch.__version__}
    with torch.inference_mode():
        for b in (1, 8):
            out[f"yolo_eager_b{b}"] = _rate(images, b, args.imgsz, net, args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        onnx_path = YOLO("yolov8n.yaml").export(format="onnx", imgsz=args.imgsz, dynamic=True)
        for spin, tag in (("1", "ort"), ("0", "ort_nospin")):  # stock, and as ours runs
            sess = _session(onnx_path, args.threads, spin)
            for b in (1, 8):
                out[f"yolo_{tag}_b{b}"] = _rate(images, b, args.imgsz, _forward(sess), args.repeat)
    out["onnxruntime"] = ort.__version__
    print(json.dumps(out))


if __name__ == "__main__":
    main()
