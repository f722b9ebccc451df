"""Frames with a truck detection on footage that has no heavy truck.

Runs the detector on every frame of each clip (at the clip's own rate, nothing skipped) and reports
the share of frames with no truck box scoring at or above the threshold (target: >= 99 %).

    python benchmarks/false_trucks.py ../shared/data/videos/*.mp4 [--weights W] [--threshold 0.3]
        [--input-size N] [--flip]
"""

from __future__ import annotations

import argparse
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

from truckcount.config import DEFAULT_WEIGHTS, DetectorConfig
from truckcount.detector.infer import Detector
from truckcount.ingest.files import open_video
from truckcount.types import VehicleClass

log = logging.getLogger("false_trucks")
TRUCK = list(VehicleClass).index(VehicleClass.TRUCK)


def clip_report(detector: Detector, path: Path, threshold: float) -> dict[str, object]:
    """Frames analysed, frames with a truck at or above ``threshold``, and the top truck score."""
    start = datetime(2000, 1, 1, tzinfo=UTC)
    frames = list(open_video(path, camera_id=path.stem, start=start, analysis_fps=1000.0))
    flagged, top = 0, 0.0
    for i in range(0, len(frames), detector.cfg.batch_size):
        for dets in detector.predict(frames[i : i + detector.cfg.batch_size]):
            scores = dets.confidence[dets.class_id == TRUCK]
            top = max(top, float(scores.max(initial=0.0)))
            flagged += int((scores >= threshold).any())
    clean = 1 - flagged / max(len(frames), 1)
    return {
        "clip": path.name,
        "frames": len(frames),
        "frames_with_truck": flagged,
        "clean_share": round(clean, 4),
        "top_truck_score": round(top, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="+", type=Path)
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--threshold", type=float, default=0.3, help="deployed truck score")
    parser.add_argument("--input-size", type=int, default=None, help="detector.input_size")
    parser.add_argument("--flip", action="store_true", help="detector.flip")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = DetectorConfig(
        weights=args.weights, score_threshold=0.05, input_size=args.input_size, flip=args.flip
    )
    detector = Detector(cfg)
    reports = [clip_report(detector, clip, args.threshold) for clip in args.clips]
    log.info(
        "%s",
        json.dumps(
            {"model": detector.version, "threshold": args.threshold, "clips": reports}, indent=1
        ),
    )


if __name__ == "__main__":
    main()
