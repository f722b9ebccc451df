"""A run during which the PostgreSQL server is down for 60 s counts exactly like an undisturbed one.

The writer is fed crossings at a steady rate (two batches a second, as the frame loop would) for
about 80 s; ten seconds in, the server is stopped, and restarted 60 s later. While it is down the
writer spools to a local file; once it is back the spool is replayed and writing goes on
directly. Afterwards the buckets equal those of the same crossings written without an outage,
every crossing is stored exactly once, and the spool folder is empty.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from tests import pg
from truckcount.storage import bucket_counts, count_crossings, open_database
from truckcount.storage.models import CrossingRow
from truckcount.storage.spool import replay_folder
from truckcount.storage.writer import StorageWriter
from truckcount.types import Crossing, Direction, RunInfo, VehicleClass

T0 = datetime(2025, 3, 1, 23, 0, tzinfo=UTC)  # the run spans two UTC days
BATCHES = 160
PER_BATCH = 5
PERIOD_S = 0.5
DOWN_AT_BATCH = 20
DOWN_S = 60.0
SPAN = timedelta(hours=2)


def _crossings(camera_id: str, run_id: str, n: int) -> list[Crossing]:
    step = SPAN / (BATCHES * PER_BATCH)
    return [
        Crossing(
            camera_id,
            "line1",
            i,
            VehicleClass.TRUCK if i % 4 else VehicleClass.BUS,
            Direction.IN if i % 3 else Direction.OUT,
            "north" if i % 3 else "south",
            T0 + i * step,
            0.9,
            "m1",
            run_id,
        )
        for i in range(n * PER_BATCH, (n + 1) * PER_BATCH)
    ]


def _write(writer: StorageWriter, camera_id: str, period_s: float, on_batch: object = None) -> bool:
    """One run of ``camera_id`` fed batch by batch; returns whether the writer ever spooled."""
    run_id = f"{camera_id}-run"
    writer.begin_run(RunInfo(run_id, camera_id, f"{camera_id}.mp4", "m1", "c", T0), "UTC")
    spooled = False
    for n in range(BATCHES):
        if callable(on_batch):
            on_batch(n)
        writer.add_crossings(_crossings(camera_id, run_id, n))
        spooled = spooled or writer.spooling
        time.sleep(period_s)
    writer.add_coverage(run_id, T0, T0 + SPAN, BATCHES * 10)
    writer.finish_run(
        run_id, status="complete", frames_analysed=BATCHES * 10, media_start=T0, media_end=T0 + SPAN
    )
    return spooled


def _series(engine: Engine, camera_id: str) -> list[tuple[object, ...]]:
    days = (date(2025, 3, 1), date(2025, 3, 2))
    found = []
    for width in ("hourly", "daily"):
        for cls in ("truck", "bus"):
            found += bucket_counts(
                engine, camera_id, width=width, start=days[0], end=days[1], class_name=cls
            )
    return [
        (b.line_id, b.direction_name, b.class_name, b.start, b.count, b.covered_s) for b in found
    ]


@pytest.fixture
def server() -> Iterator[pg.Server]:
    """A PostgreSQL server of the test's own, which the test may stop and start."""
    try:
        if importlib.util.find_spec("psycopg") is None:
            raise pg.PostgresUnavailable("the psycopg driver is not installed")
        with pg.restartable_server() as running:
            yield running
    except pg.PostgresUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI=true: {exc}")
        pytest.skip(f"no PostgreSQL server: {exc}")


def test_closing_the_writer_while_the_server_is_down_keeps_the_spool(
    server: pg.Server, tmp_path: Path
) -> None:
    """The process ends during an outage: nothing raises, the spool stays for a later replay."""
    spool = tmp_path / "spool"
    writer = StorageWriter(server.url, spool, retry_s=0)
    writer.begin_run(RunInfo("cam1-run", "cam1", "cam1.mp4", "m1", "c", T0), "UTC")
    writer.add_crossings(_crossings("cam1", "cam1-run", 0))  # written directly
    server.stop()
    writer.add_crossings(_crossings("cam1", "cam1-run", 1))  # spooled
    end = T0 + SPAN
    writer.add_coverage("cam1-run", T0, end, 10)
    writer.finish_run(
        "cam1-run", status="complete", frames_analysed=10, media_start=T0, media_end=end
    )
    writer.close()
    assert len(list(spool.glob("*.jsonl"))) == 1
    server.start()
    engine = open_database(server.url)
    try:
        assert replay_folder(engine, spool).files == 1
        assert count_crossings(engine, "cam1") == 2 * PER_BATCH
    finally:
        engine.dispose()


@pytest.mark.slow
def test_a_60_s_outage_mid_run_loses_and_doubles_nothing(server: pg.Server, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    writer = StorageWriter(server.url, spool, retry_s=2.0)
    _write(writer, "clean", 0.0)  # the undisturbed reference

    def outage() -> None:
        server.stop()
        time.sleep(DOWN_S)
        server.start()

    cut = threading.Thread(target=outage)

    def maybe_cut(n: int) -> None:
        if n == DOWN_AT_BATCH:
            cut.start()
            time.sleep(1.0)  # the server is down before the next write

    spooled = _write(writer, "cam1", PERIOD_S, maybe_cut)
    cut.join()
    writer.close()

    assert spooled, "the outage never reached the writer"
    engine = open_database(server.url)
    try:
        assert _series(engine, "cam1") == _series(engine, "clean")
        total = BATCHES * PER_BATCH
        assert count_crossings(engine, "cam1") == total
        with engine.connect() as conn:
            rows = conn.scalar(
                select(func.count()).select_from(CrossingRow).where(CrossingRow.camera_id == "cam1")
            )
        assert rows == total, "every crossing stored exactly once"
        assert list(spool.glob("*")) == []
    finally:
        engine.dispose()
