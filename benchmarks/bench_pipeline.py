"""Throughput of the hot path: decode, detector, end to end, against a naive per-frame loop.

Usage: .venv/bin/python benchmarks/bench_pipeline.py [--clip demo/km39-siang.mp4] [--repeat 1]
    [--runtime torch|onnx] [--precision fp32|bf16] [--weights FILE]

Measured in one process, so every ratio is a same-run ratio:
- decode only: ``open_video`` (PyAV, threaded, non-reference frames no sample needs left
  undecoded) against plain OpenCV reading of every frame;
- detector only at batch 1, 8 and 32 on the clip's frames in memory;
- end to end (decode -> detector -> tracker -> counter) in frames/s and real-time factor;
- the naive baseline, strictly sequential: OpenCV decodes every frame, the analysed ones go one
  at a time through the eager fp32 detector, then the tracker and counter; and whether both sides
  counted the same crossings per line, class and direction;
- end to end once more with the crop classifier off (``detector.classifier: null``): its cost;
- the same on a 1280x720 25 fps H.264 clip made from the demo clip at run time (in a temporary
  folder): the backfill real-time factor at 5 fps analysis.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

import av
import cv2
import numpy as np
import torch

from truckcount.config import AppConfig, DetectorConfig, LineConfig
from truckcount.detector.infer import Detector
from truckcount.ingest import open_video
from truckcount.pipeline import build_stages, process_frames
from truckcount.types import Crossing, Frame, RunInfo

T = TypeVar("T")
START = datetime(2021, 11, 15, 6, 17, 9, tzinfo=UTC)
ANALYSIS_FPS = 5.0


def make_720p25(src: Path, out: Path, fps: int = 25) -> Path:
    """Re-encode ``src`` to 1280x720 H.264 at ``fps``, cross-fading between its frames.

    The demo clip has 5 frames/s; the frames in between are blends of their neighbours, so every
    frame differs (as in real video) and the encoder uses B-frames (x264 ``superfast``).
    """
    with av.open(str(src)) as inp:
        stream = inp.streams.video[0]
        src_fps = stream.average_rate or Fraction(5)
        frames = [cv2.resize(f.to_ndarray(format="bgr24"), (1280, 720)) for f in inp.decode(stream)]
    repeat = max(round(fps / src_fps), 1)
    with av.open(str(out), mode="w") as dst:
        enc = dst.add_stream("libx264", rate=fps, options={"preset": "superfast", "crf": "23"})
        enc.width, enc.height, enc.pix_fmt = 1280, 720, "yuv420p"
        for i, (a, b) in enumerate(zip(frames, frames[1:] + frames[-1:], strict=True)):
            for j in range(repeat):
                img = np.asarray(cv2.addWeighted(a, 1 - j / repeat, b, j / repeat, 0), np.uint8)
                frame = av.VideoFrame.from_ndarray(img, format="bgr24")
                frame.pts, frame.time_base = i * repeat + j, Fraction(1, fps)
                dst.mux(enc.encode(frame))
        dst.mux(enc.encode(None))
    return out


def _best_with_result(fn: Callable[[], T], repeat: int) -> tuple[float, T]:
    """Best wall time of ``repeat`` calls, and what the last call returned."""
    times = []
    for _ in range(max(repeat, 1)):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def _best(fn: Callable[[], object], repeat: int) -> float:
    return _best_with_result(fn, repeat)[0]


def _frames(clip: Path) -> Iterator[Frame]:
    return open_video(clip, camera_id="bench", start=START, analysis_fps=ANALYSIS_FPS)


def _opencv_frames(clip: Path) -> Iterator[Frame]:
    """Plain OpenCV: read (decode + convert) every frame, keep every n-th by frame counter."""
    cap = cv2.VideoCapture(str(clip))
    every = max(round(cap.get(cv2.CAP_PROP_FPS) / ANALYSIS_FPS), 1)
    i = 0
    while True:
        ok, image = cap.read()
        if not ok:
            break
        if i % every == 0:
            ts = START + timedelta(seconds=i / ANALYSIS_FPS / every)
            yield Frame("bench", ts, i, np.asarray(image, np.uint8))
        i += 1
    cap.release()


def _media_seconds(clip: Path) -> float:
    with av.open(str(clip)) as c:
        s = c.streams.video[0]
        assert s.duration is not None and s.time_base is not None
        return float(s.duration * s.time_base)


def _count(frames: Iterator[Frame]) -> int:
    return sum(1 for _ in frames)


def decode_figures(clip: Path, repeat: int) -> dict[str, float]:
    """Frames/s of media decoded (every frame of the file counts) by each reader."""
    with av.open(str(clip)) as c:
        n = c.streams.video[0].frames
    pyav = _best(lambda: _count(_frames(clip)), repeat)
    opencv = _best(lambda: _count(_opencv_frames(clip)), repeat)
    return {
        "decode_pyav_fps": round(n / pyav, 1),
        "decode_opencv_every_frame_fps": round(n / opencv, 1),
        "decode_pyav_over_opencv": round(opencv / pyav, 2),
    }


def detector_figures(frames: list[Frame], det_cfg: DetectorConfig, repeat: int) -> dict[str, float]:
    """Images/s of ``Detector.predict`` (resize + network + decoding + NMS) per batch size."""
    out = {}
    for batch in (1, 8, 32):
        det = Detector(det_cfg.model_copy(update={"batch_size": batch}))
        det.predict(frames[:batch])  # warm-up
        secs = _best(lambda d=det: d.predict(frames), repeat)  # type: ignore[misc]
        out[f"detector_batch{batch}_fps"] = round(len(frames) / secs, 1)
    return out


CountKey = tuple[str, str, str]  # line, class, direction


def _tally(crossings: list[Crossing]) -> Counter[CountKey]:
    return Counter((c.line_id, c.class_name.value, c.direction_name) for c in crossings)


def _bench_config(clip: Path, det: Detector) -> tuple[AppConfig, RunInfo]:
    # The counting hot path only: the truck-presence feature is off on both sides (it costs about
    # 3 ms a frame on this CPU; see BENCHMARKS.md). The crop classifier is the detector's and
    # runs on the detector's runtime, as in the product.
    cfg = AppConfig.model_validate(
        {
            "cameras": [{"id": "bench", "lines": [LineConfig().model_dump(by_alias=True)]}],
            "presence": {"weights": None},
            "detector": {"classifier": det.cfg.classifier, "runtime": det.cfg.runtime},
        }
    )
    return cfg, RunInfo("bench", "bench", str(clip), det.version, cfg.digest(), START)


def _end_to_end(clip: Path, det: Detector) -> Callable[[], Counter[CountKey]]:
    """The product's path: ``open_video`` -> ``process_frames`` (read-ahead, batched detector)."""
    cfg, run = _bench_config(clip, det)

    def go() -> Counter[CountKey]:
        found: list[Crossing] = []
        process_frames(_frames(clip), det, build_stages(cfg, cfg.cameras[0], run), found.extend)
        return _tally(found)

    return go


def _naive(clip: Path, det: Detector) -> Callable[[], Counter[CountKey]]:
    """The naive loop, strictly in sequence: OpenCV reads a frame, an analysed frame goes alone
    through the detector, then the tracker and the counter; nothing overlaps."""
    cfg, run = _bench_config(clip, det)

    def go() -> Counter[CountKey]:
        stages = build_stages(cfg, cfg.cameras[0], run)
        found: list[Crossing] = []
        for frame in _opencv_frames(clip):
            (dets,) = det.predict([frame])
            tracked = stages.tracker.update(dets, (frame.ts - START).total_seconds())
            found += stages.counter.update(frame, tracked)
        found += stages.counter.flush()
        return _tally(found)

    return go


def pipeline_figures(
    clip: Path, det_cfg: DetectorConfig, repeat: int, prefix: str
) -> dict[str, object]:
    """End-to-end and naive-baseline frames/s and real-time factors on one clip, and whether
    both counted the same crossings (per line, class and direction)."""
    media = _media_seconds(clip)
    det = Detector(det_cfg)
    naive_det = Detector(DetectorConfig(batch_size=1))  # eager fp32, shipped weights
    fast, fast_counts = _best_with_result(_end_to_end(clip, det), repeat)
    naive, naive_counts = _best_with_result(_naive(clip, naive_det), repeat)
    bare = Detector(det_cfg.model_copy(update={"classifier": None}))
    without = _best(_end_to_end(clip, bare), repeat)
    n = _count(_frames(clip))
    return {
        f"{prefix}_analysed_frames": n,
        f"{prefix}_media_seconds": round(media, 1),
        f"{prefix}_end_to_end_fps": round(n / fast, 1),
        f"{prefix}_real_time_factor": round(media / fast, 2),
        f"{prefix}_naive_fps": round(n / naive, 1),
        f"{prefix}_naive_real_time_factor": round(media / naive, 2),
        f"{prefix}_end_to_end_over_naive": round(naive / fast, 2),
        f"{prefix}_end_to_end_fps_without_crop_classifier": round(n / without, 1),
        f"{prefix}_crossings": sum(fast_counts.values()),
        f"{prefix}_naive_crossings": sum(naive_counts.values()),
        f"{prefix}_counts_identical": fast_counts == naive_counts,
        f"{prefix}_count_differences": {
            "/".join(k): [fast_counts[k], naive_counts[k]]
            for k in sorted(set(fast_counts) | set(naive_counts))
            if fast_counts[k] != naive_counts[k]
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clip", type=Path, default=Path("demo/km39-siang.mp4"))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--runtime", choices=["torch", "onnx"], default="torch")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--weights", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    det_cfg = DetectorConfig.model_validate(
        {"runtime": args.runtime, "precision": args.precision}
        | ({"weights": args.weights} if args.weights else {})
    )
    frames = list(_frames(args.clip))
    result: dict[str, object] = {
        "clip": str(args.clip),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "threads": torch.get_num_threads(),
        "detector": det_cfg.model_dump(mode="json", include={"runtime", "precision", "weights"}),
        "load_average_before": os.getloadavg(),
    }
    result.update(decode_figures(args.clip, args.repeat))
    result.update(detector_figures(frames, det_cfg, args.repeat))
    result.update(pipeline_figures(args.clip, det_cfg, args.repeat, "clip"))
    with tempfile.TemporaryDirectory() as tmp:
        hd = make_720p25(args.clip, Path(tmp) / "clip-720p25.mp4")
        result.update({f"720p25_{k}": v for k, v in decode_figures(hd, args.repeat).items()})
        result.update(pipeline_figures(hd, det_cfg, args.repeat, "720p25"))
    result["load_average_after"] = os.getloadavg()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
