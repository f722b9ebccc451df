"""Backfill of many short recordings: ``truckcount backfill`` against ``truckcount run`` per file.

The demo clip is cut into recordings of ``--seconds`` (re-encoded, named by their burnt-in start
as the watch pattern expects) in a temporary folder. The same files are then counted twice into
two fresh SQLite databases: once by one ``truckcount run`` process per file (the start passed with
``--start``), once by one ``truckcount backfill`` process. Reports wall-clock seconds of each and
whether the stored crossings are the same.

    python benchmarks/bench_backfill.py [--seconds 15]
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av
from sqlalchemy import create_engine, text

log = logging.getLogger("bench_backfill")
REPO = Path(__file__).resolve().parent.parent
DEMO_CLIP = REPO / "demo" / "km39-siang.mp4"
DEMO_START = datetime(2021, 11, 15, 13, 17, 9)  # the clip's burnt-in clock, Asia/Jakarta
NAME = "km39_%Y%m%d_%H%M%S.mp4"
CONFIG = (
    "storage: {{url: 'sqlite:///{db}'}}\n"
    "cameras:\n  - {{id: km39, timezone: Asia/Jakarta, lines: [{{id: y60, a: [0, 0.6], "
    "b: [1, 0.6], directions: {{in: toward_camera, out: away_from_camera}}}}]}}\n"
)


def demo_parts(folder: Path, seconds: int = 25) -> list[Path]:
    """The demo clip cut into recordings of ``seconds``, named ``km39_<start>.mp4``."""
    folder.mkdir(parents=True)
    with av.open(str(DEMO_CLIP)) as src:
        frames = [f.to_ndarray(format="bgr24") for f in src.decode(video=0)]
    per, parts = seconds * 5, []
    for k in range(0, len(frames), per):
        path = folder / (DEMO_START + timedelta(seconds=k // 5)).strftime(NAME)
        with av.open(str(path), "w") as out:
            stream = out.add_stream("libx264", rate=5, options={"crf": "18"})
            stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
            for i, img in enumerate(frames[k : k + per]):
                frame = av.VideoFrame.from_ndarray(img, format="bgr24")
                frame.pts, frame.time_base = i, Fraction(1, 5)
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        parts.append(path)
    return parts


def write_config(folder: Path, db: Path) -> Path:
    """A config of camera ``km39`` with a line at y = 0.6, storing into SQLite file ``db``."""
    path = folder / f"{db.stem}.yaml"
    path.write_text(CONFIG.format(db=db))
    return path


def crossings(db: Path) -> list[tuple[str, str, str]]:
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT line_id, direction_name, class_name FROM crossings"))
        found = sorted(tuple(r) for r in rows)
    engine.dispose()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15, help="length of each recording")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cli = [sys.executable, "-m", "truckcount.cli", "-q"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        parts = demo_parts(root / "recordings", args.seconds)
        per_file, once = root / "per_file.db", root / "backfill.db"
        t0 = time.perf_counter()
        for part in parts:
            start = datetime.strptime(part.name, NAME).isoformat() + "+07:00"
            run = [*cli, "run", str(part), "--camera", "km39", "--start", start]
            config = write_config(root, per_file)
            subprocess.run([*run, "-c", str(config)], check=True, stdout=subprocess.DEVNULL)
        t1 = time.perf_counter()
        backfill = [*cli, "backfill", str(parts[0].parent), "-c", str(write_config(root, once))]
        subprocess.run(backfill, check=True, stdout=subprocess.DEVNULL)
        t2 = time.perf_counter()
        report = {
            "recordings": len(parts),
            "seconds_each": args.seconds,
            "run_per_file_s": round(t1 - t0, 2),
            "backfill_s": round(t2 - t1, 2),
            "ratio": round((t1 - t0) / (t2 - t1), 2),
            "same_crossings": crossings(per_file) == crossings(once),
            "crossings": len(crossings(once)),
        }
    log.info("%s", json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
