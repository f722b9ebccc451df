"""Storage throughput: bulk insert of crossings, and the daily query on 100 cameras x 1 year.

Usage: .venv/bin/python benchmarks/bench_storage.py [--engine sqlite|postgresql|both]
       [--insert-only] [--repeat N]
Prints one JSON object. The bulk insert (``add_crossings`` in batches of 10,000: COPY on
PostgreSQL, a lean executemany on SQLite) is compared in the same run against the previous insert
path (SQLAlchemy ``insert(CrossingRow)`` with one dict per row, as ``add_crossings`` did before)
and against a naive baseline: one INSERT per row through an ORM session.
PostgreSQL runs on a throwaway server started the way the tests start one (``tests/pg.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.pg

from tests import pg
from truckcount.storage import (
    add_coverage,
    add_crossings,
    begin_run,
    bucket_counts,
    ensure_camera,
    finish_run,
    open_database,
)
from truckcount.storage.models import CrossingRow, RunRow
from truckcount.types import Crossing, Direction, RunInfo, VehicleClass

BATCH = 10_000
BULK_ROWS = 200_000
OLD_ROWS = 100_000
NAIVE_ROWS = 20_000
CAMERAS = 100
PER_DAY = 30
YEAR = date(2025, 1, 1)
DAYS = 365
CLASSES = (VehicleClass.TRUCK, VehicleClass.TRUCK, VehicleClass.CAR, VehicleClass.BUS)


def _run(engine: Engine, run_id: str, camera_id: str, source: str) -> str:
    """Begin a run; returns its attempt id."""
    run = RunInfo(run_id, camera_id, source, "bench-v1", "0" * 16, datetime.now(UTC))
    return begin_run(engine, run)


def _crossings(camera_id: str, run_id: str, start: datetime, n: int, step_s: float) -> list:
    """``n`` crossings ``step_s`` apart from ``start``, on two lines, both ways, mixed classes."""
    out = []
    for i in range(n):
        way = Direction.IN if i % 2 else Direction.OUT
        out.append(
            Crossing(
                camera_id,
                f"line{i % 2}",
                i,
                CLASSES[i % len(CLASSES)],
                way,
                "north" if way is Direction.IN else "south",
                start + timedelta(seconds=i * step_s),
                0.9,
                "bench-v1",
                run_id,
            )
        )
    return out


def _rate(engine: Engine, rows: list[Crossing], write: Callable[..., object]) -> float:
    """Seconds to write ``rows`` in batches of ``BATCH`` with ``write(engine, batch)``."""
    start = time.perf_counter()
    for i in range(0, len(rows), BATCH):
        write(engine, rows[i : i + BATCH])
    return time.perf_counter() - start


def _old_add_crossings(engine: Engine, crossings: list[Crossing], attempt_id: str) -> None:
    """The insert path ``add_crossings`` had before COPY: checks, then one dict per row."""
    seen = {(c.run_id, c.line_id, c.track_id) for c in crossings}
    assert len(seen) == len(crossings)
    rows = [{"attempt_id": attempt_id, **_values(c)} for c in crossings]
    with engine.begin() as conn:
        conn.scalar(select(RunRow.status).where(RunRow.attempt_id == attempt_id))
        conn.execute(insert(CrossingRow), rows)


def bench_insert(engine: Engine, repeat: int = 1) -> dict[str, float | list[int]]:
    """Rows/s of ``add_crossings``, of the previous insert path, and of one ORM INSERT per row.

    The first two alternate ``repeat`` times (fresh runs each time); their medians are reported,
    so a burst of load from other processes does not decide the ratio.
    """
    ensure_camera(engine, "bulk", "UTC")
    t0 = datetime(2024, 6, 1, tzinfo=UTC)
    bulk_s, old_s = [], []
    for r in range(repeat):
        _run(engine, f"bulk-run-{r}", "bulk", f"bulk-{r}.mp4")
        rows = _crossings("bulk", f"bulk-run-{r}", t0, BULK_ROWS, 0.5)
        bulk_s.append(_rate(engine, rows, add_crossings))
        old_attempt = _run(engine, f"old-run-{r}", "bulk", f"old-{r}.mp4")
        old = _crossings("bulk", f"old-run-{r}", t0, OLD_ROWS, 0.5)
        old_s.append(_rate(engine, old, lambda e, b, a=old_attempt: _old_add_crossings(e, b, a)))

    naive_attempt = _run(engine, "naive-run", "bulk", "naive.mp4")
    naive = _crossings("bulk", "naive-run", t0, NAIVE_ROWS, 0.5)
    start = time.perf_counter()
    with Session(engine) as session:
        for c in naive:
            session.add(CrossingRow(attempt_id=naive_attempt, **_values(c)))
            session.flush()  # one INSERT statement per row
        session.commit()
    naive_s = time.perf_counter() - start
    bulk_rate = BULK_ROWS / statistics.median(bulk_s)
    old_rate = OLD_ROWS / statistics.median(old_s)
    naive_rate = NAIVE_ROWS / naive_s
    return {
        "repeat": repeat,
        "bulk_rows": BULK_ROWS,
        "bulk_rows_per_s": round(bulk_rate),
        "bulk_rows_per_s_each": [round(BULK_ROWS / t) for t in bulk_s],
        "old_rows": OLD_ROWS,
        "old_rows_per_s": round(old_rate),
        "old_rows_per_s_each": [round(OLD_ROWS / t) for t in old_s],
        "bulk_vs_old": round(bulk_rate / old_rate, 2),
        "naive_rows": NAIVE_ROWS,
        "naive_rows_per_s": round(naive_rate),
        "bulk_vs_naive": round(bulk_rate / naive_rate, 1),
    }


def _values(c: Crossing) -> dict[str, object]:
    return {
        "run_id": c.run_id,
        "camera_id": c.camera_id,
        "line_id": c.line_id,
        "track_id": c.track_id,
        "class_name": c.class_name.value,
        "direction": c.direction.value,
        "direction_name": c.direction_name,
        "ts": c.ts,
        "confidence": c.confidence,
        "model_version": c.model_version,
    }


def load_year(engine: Engine) -> dict[str, float]:
    """100 cameras x 365 days x 30 crossings; one complete run with coverage per camera-month."""
    start = time.perf_counter()
    total = 0
    for cam in range(CAMERAS):
        camera_id = f"cam{cam:03d}"
        ensure_camera(engine, camera_id, "Europe/Berlin")
        for month in range(1, 13):
            first = datetime(2025, month, 1, tzinfo=UTC)
            last = datetime(2025 + month // 12, month % 12 + 1, 1, tzinfo=UTC)
            run_id = f"{camera_id}-2025-{month:02d}"
            _run(engine, run_id, camera_id, f"{run_id}.mp4")
            days = (last - first).days
            rows = _crossings(camera_id, run_id, first, days * PER_DAY, 86_400 / PER_DAY)
            for i in range(0, len(rows), BATCH):
                total += add_crossings(engine, rows[i : i + BATCH])
            frames = int((last - first).total_seconds() * 5)
            add_coverage(engine, run_id, first, last, frames)
            finish_run(
                engine,
                run_id,
                status="complete",
                frames_analysed=frames,
                media_start=first,
                media_end=last,
            )
    return {"rows": total, "runs": CAMERAS * 12, "load_s": round(time.perf_counter() - start, 1)}


def _median_ms(fn: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times) * 1000, 1)


def bench_query(engine: Engine) -> dict[str, float]:
    """Median of 3: daily buckets over the year for one camera, and for all 100 in a loop."""
    end = YEAR + timedelta(days=DAYS - 1)

    def one(camera_id: str) -> int:
        buckets = bucket_counts(engine, camera_id, width="daily", start=YEAR, end=end)
        return len(buckets)

    buckets = one("cam000")
    return {
        "buckets_per_camera": buckets,
        "one_camera_ms": _median_ms(lambda: one("cam000")),
        "all_cameras_ms": _median_ms(lambda: [one(f"cam{c:03d}") for c in range(CAMERAS)]),
    }


@contextlib.contextmanager
def _database(kind: str) -> Iterator[str]:
    if kind == "postgresql":
        with pg.server() as url:
            yield url
        return
    with tempfile.TemporaryDirectory(prefix="truckcount-bench-") as folder:
        yield f"sqlite:///{Path(folder) / 'counts.db'}"


def bench(kind: str, *, insert_only: bool = False, repeat: int = 3) -> dict[str, object]:
    """All measurements on one fresh database of ``kind``."""
    with _database(kind) as url:
        engine = open_database(url)
        try:
            result: dict[str, object] = {"insert": bench_insert(engine, repeat)}
            if insert_only:
                return result
            result["load"] = load_year(engine)
            result["query"] = bench_query(engine)
        finally:
            engine.dispose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--insert-only", action="store_true", help="skip the year load and query")
    parser.add_argument("--repeat", type=int, default=3, help="bulk/old insert repetitions")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    kinds = ["sqlite", "postgresql"] if args.engine == "both" else [args.engine]
    report: dict[str, object] = {
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "measured": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    for kind in kinds:
        report[kind] = bench(kind, insert_only=args.insert_only, repeat=args.repeat)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
