"""Reruns replace results atomically: old results until the rerun completes, then the new ones.

Also the migration that introduced attempts (0003), on both backends: runs written before it keep
their counts, and going back to 0002 keeps the newest attempt of each run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, text

from truckcount.storage import (
    add_coverage,
    add_crossings,
    begin_run,
    bucket_counts,
    count_crossings,
    ensure_camera,
    finish_run,
    list_runs,
    open_database,
)
from truckcount.storage.database import MIGRATIONS
from truckcount.types import Crossing, Direction, RunInfo, VehicleClass

CAM = "cam1"
DAY = date(2024, 5, 1)
T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def crossings(n: int, run_id: str = "r") -> list[Crossing]:
    return [
        Crossing(CAM, "gate", i, VehicleClass.TRUCK, Direction.IN, "north", T0, 0.9, "m1", run_id)
        for i in range(n)
    ]


def attempt(engine: Engine, n: int, *, finish: bool = True) -> str:
    """One attempt at run ``r`` with ``n`` crossings covering 10:00-11:00."""
    attempt_id = begin_run(engine, RunInfo("r", CAM, "a.mp4", "m1", "cfg", datetime.now(UTC)))
    add_crossings(engine, crossings(n))
    add_coverage(engine, "r", T0, T0 + timedelta(hours=1), 100)
    if finish:
        end = T0 + timedelta(hours=1)
        finish_run(engine, "r", status="complete", frames_analysed=1, media_start=T0, media_end=end)
    return attempt_id


def daily(engine: Engine, as_of: datetime | None = None) -> int | None:
    [bucket] = bucket_counts(engine, CAM, start=DAY, end=DAY, as_of=as_of)
    return bucket.count


def test_readers_see_the_old_attempt_until_the_new_one_completes(engine: Engine) -> None:
    attempt(engine, 3)
    attempt(engine, 5, finish=False)
    assert daily(engine) == 3, "the rerun is still writing: old results"
    swap_before = datetime.now(UTC)
    time.sleep(0.01)
    end = T0 + timedelta(hours=1)
    finish_run(engine, "r", status="complete", frames_analysed=1, media_start=T0, media_end=end)
    assert daily(engine) == 5, "completed: new results, never 3 + 5"
    assert daily(engine, as_of=swap_before) == 3, "as of before the swap: the old attempt"
    assert count_crossings(engine, CAM) == 5


def test_a_failed_rerun_keeps_the_old_results(engine: Engine) -> None:
    attempt(engine, 3)
    attempt(engine, 5, finish=False)
    finish_run(engine, "r", status="failed", frames_analysed=1, media_start=None, media_end=None)
    assert daily(engine) == 3
    assert [r.status.value for r in list_runs(engine)] == ["complete", "failed"]


def test_replayed_writes_into_a_finished_attempt_are_skipped(engine: Engine) -> None:
    first = attempt(engine, 3)
    kwargs = {"attempt_id": first, "replay": True}
    assert add_crossings(engine, crossings(4), **kwargs) == 0
    add_coverage(engine, "r", T0, T0 + timedelta(hours=2), 100, **kwargs)
    end = T0 + timedelta(hours=1)
    finish_run(
        engine, "r", status="failed", frames_analysed=0, media_start=T0, media_end=end, **kwargs
    )
    [stored] = list_runs(engine)
    assert (stored.status.value, daily(engine)) == ("complete", 3)


# --- migration 0003 -------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[str]:
    """URL of an empty database on each backend (a new database on the test server)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/old.db"
        return
    server: Engine = request.getfixturevalue("pg_engine")
    name = f"mig_{int(time.time() * 1e6)}"
    with server.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    yield server.url.set(database=name).render_as_string(hide_password=False)
    with server.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))


def _alembic(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def _write_at_0002(url: str) -> None:
    """Camera, one complete run r0 with two crossings and coverage, as 0002 stored them."""
    old = create_engine(url)
    ts = "'2024-05-01 10:00:00'"
    end = "'2024-05-01 11:00:00'"
    with old.begin() as conn:
        conn.execute(text(f"INSERT INTO cameras VALUES ('{CAM}', 'UTC', {ts})"))
        conn.execute(
            text(
                "INSERT INTO runs (run_id, camera_id, source, model_version, config_hash,"
                " code_version, started_at, finished_at, status, frames_analysed, media_start,"
                f" media_end, available_at) VALUES ('r0', '{CAM}', 'a.mp4', 'm0', 'c', '0', {ts},"
                f" {end}, 'complete', 9, {ts}, {end}, {end})"
            )
        )
        for track in (1, 2):
            conn.execute(
                text(
                    "INSERT INTO crossings (run_id, camera_id, line_id, track_id, class_name,"
                    " direction, direction_name, ts, confidence, model_version) VALUES"
                    f" ('r0', '{CAM}', 'gate', {track}, 'truck', 'in', 'north', {ts}, 0.9, 'm0')"
                )
            )
        conn.execute(
            text(
                'INSERT INTO coverage (run_id, camera_id, start, "end", frames_analysed,'
                f" frames_dropped) VALUES ('r0', '{CAM}', {ts}, {end}, 9, 0)"
            )
        )
    old.dispose()


def test_migration_0003_keeps_counts_and_a_rerun_replaces_them(empty_url: str) -> None:
    command.upgrade(_alembic(empty_url), "0002")
    _write_at_0002(empty_url)
    engine = open_database(empty_url, create=False)
    try:
        [run] = list_runs(engine)
        assert (run.attempt_id, run.run_id) == ("r0", "r0")
        assert daily(engine) == 2
        begin_run(engine, RunInfo("r0", CAM, "a.mp4", "m0", "c", datetime.now(UTC)))
        add_crossings(engine, crossings(1, "r0"))
        add_coverage(engine, "r0", T0, T0 + timedelta(hours=1), 9)
        assert daily(engine) == 2
        finish_run(engine, "r0", status="complete", frames_analysed=9, media_start=T0, media_end=T0)
        assert daily(engine) == 1
    finally:
        engine.dispose()


def test_migration_0003_downgrade_keeps_the_newest_complete_attempt(empty_url: str) -> None:
    engine = open_database(empty_url)
    ensure_camera(engine, CAM, "UTC")
    attempt(engine, 3)
    attempt(engine, 5)
    attempt(engine, 7, finish=False)
    engine.dispose()
    command.downgrade(_alembic(empty_url), "0002")  # through 0004 and 0003
    old = create_engine(empty_url)
    with old.connect() as conn:
        assert conn.execute(text("SELECT run_id, status FROM runs")).all() == [("r", "complete")]
        assert conn.scalar(text("SELECT count(*) FROM crossings")) == 5
    old.dispose()
