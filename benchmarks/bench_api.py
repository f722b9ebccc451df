"""HTTP API latency: ``GET /counts`` over a real loopback socket vs the same library call.

Usage: .venv/bin/python benchmarks/bench_api.py [--days 365] [--per-day 200] [--requests 40]
Prints one JSON object. One camera gets ``--days`` daily runs, each with a full day of coverage
and ``--per-day`` truck crossings, in a temporary SQLite file. The API is served by uvicorn on
127.0.0.1; each query is timed as an HTTP request (httpx, keep-alive) and, in the same run, as
the direct call the route makes (``truckcount.query.fetch_with`` + ``render``): the baseline.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import partial

import httpx
import uvicorn
from sqlalchemy import Engine

from truckcount.api import ApiSettings, create_app
from truckcount.query import CountsRequest, OutputFormat, fetch_with, render
from truckcount.storage import (
    add_coverage,
    add_crossings,
    begin_run,
    ensure_camera,
    finish_run,
    open_database,
)
from truckcount.types import BucketWidth, Crossing, Direction, RunInfo, VehicleClass

FIRST = date(2025, 1, 1)


def fill(url: str, days: int, per_day: int) -> None:
    """One complete run per day: 24 h of coverage and ``per_day`` trucks spread over it."""
    engine = open_database(url)
    ensure_camera(engine, "cam1", "Europe/Berlin")
    for d in range(days):
        start = datetime.combine(FIRST + timedelta(days=d), datetime.min.time(), tzinfo=UTC)
        run = f"day{d}"
        begin_run(engine, RunInfo(run, "cam1", f"{run}.mp4", "m1", "cfg", start))
        step = 86400 / per_day
        add_crossings(
            engine,
            [
                Crossing(
                    "cam1",
                    "gate",
                    i,
                    VehicleClass.TRUCK,
                    Direction(("in", "out")[i % 2]),
                    ("north", "south")[i % 2],
                    start + timedelta(seconds=i * step),
                    0.9,
                    "m1",
                    run,
                )
                for i in range(per_day)
            ],
        )
        end = start + timedelta(days=1)
        add_coverage(engine, run, start, end, frames_analysed=432000)
        finish_run(engine, run, status="complete", frames_analysed=432000,
                   media_start=start, media_end=end)  # fmt: skip
    engine.dispose()


def timed(fn: Callable[[], object], n: int) -> dict[str, float]:
    fn()  # warm-up
    times = []
    for _ in range(n):
        began = time.perf_counter()
        fn()
        times.append((time.perf_counter() - began) * 1000)
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[int(0.95 * n) - 1], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--per-day", type=int, default=200)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        began = time.perf_counter()
        fill(url, args.days, args.per_day)
        filled_s = time.perf_counter() - began
        engine = open_database(url)
        app = create_app(ApiSettings(url), engine)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        last = FIRST + timedelta(days=args.days - 1)
        queries = {
            "daily_whole_range": (
                f"from={FIRST}&to={last}",
                CountsRequest("cam1", BucketWidth.DAILY, start=FIRST, end=last),
            ),
            "hourly_one_week": (
                f"granularity=hour&from={last - timedelta(days=6)}&to={last}",
                CountsRequest("cam1", BucketWidth.HOURLY, start=last - timedelta(days=6), end=last),
            ),
        }
        results = {}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as client:
            for name, (query, req) in queries.items():
                http = timed(partial(_get, client, f"/counts?camera=cam1&{query}"), args.requests)
                direct = timed(partial(_call, engine, req), args.requests)
                ratio = round(http["p50_ms"] / direct["p50_ms"], 2)
                results[name] = {"http": http, "library_call": direct, "http_over_library": ratio}
        server.should_exit = True
        thread.join(10)
        engine.dispose()
    print(json.dumps({
        "machine": platform.platform(), "days": args.days, "crossings_per_day": args.per_day,
        "fill_s": round(filled_s, 1), "requests": args.requests, "results": results,
    }, indent=1))  # fmt: skip


def _get(client: httpx.Client, path: str) -> None:
    client.get(path).raise_for_status()


def _call(engine: Engine, req: CountsRequest) -> None:
    buckets, zone = fetch_with(engine, req)
    render(buckets, req, zone, OutputFormat.JSON)


if __name__ == "__main__":
    main()
