"""Buckets read from the database: coverage, vintages and as-of queries, on every backend."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, MetaData, create_engine, func, insert, select

from truckcount.storage import (
    StorageError,
    add_coverage,
    add_crossings,
    begin_run,
    bucket_counts,
    bucket_frame,
    daily_counts,
    ensure_camera,
    finish_run,
    list_runs,
    open_database,
    visible_runs,
)
from truckcount.storage.database import MIGRATIONS
from truckcount.storage.models import CameraRow, CoverageRow, CrossingRow
from truckcount.types import Bucket, Crossing, Direction, RunInfo, VehicleClass

CAM = "cam1"
NOW = lambda: datetime.now(UTC)  # noqa: E731
DAY = date(2024, 5, 1)
T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def crossing(ts: datetime, track_id: int, run_id: str, *, line_id: str = "gate") -> Crossing:
    return Crossing(
        CAM, line_id, track_id, VehicleClass.TRUCK, Direction.IN, "north", ts, 0.9, "m", run_id
    )


def record(
    engine: Engine,
    run_id: str,
    *,
    n: int,
    model: str = "m1",
    source: str = "a.mp4",
    span: tuple[datetime, datetime] = (T0, T0 + timedelta(hours=1)),
    finish: bool = True,
) -> None:
    """One run of ``source``: ``n`` crossings in its first minutes, covering ``span``."""
    begin_run(engine, RunInfo(run_id, CAM, source, model, "cfg", T0))
    add_crossings(engine, [crossing(span[0] + timedelta(minutes=i), i, run_id) for i in range(n)])
    add_coverage(engine, run_id, span[0], span[1], frames_analysed=100)
    if finish:
        finish_run(
            engine,
            run_id,
            status="complete",
            frames_analysed=100,
            media_start=span[0],
            media_end=span[1],
        )


def hourly(buckets: Sequence[Bucket]) -> dict[int, int | None]:
    return {b.start.hour: b.count for b in buckets}


def daily_count(engine: Engine, **options: object) -> int | None:
    [bucket] = bucket_counts(engine, CAM, start=DAY, end=DAY, **options)
    return bucket.count


def test_uncovered_hours_read_null_and_covered_quiet_hours_zero(engine: Engine) -> None:
    record(engine, "r1", n=2, span=(T0, T0 + timedelta(hours=2)))
    buckets = bucket_counts(engine, CAM, width="hourly", start=DAY, end=DAY)
    assert len(buckets) == 24
    expected = {h: None for h in range(24)} | {10: 2, 11: 0}
    assert hourly(buckets) == expected
    assert [b.covered_s for b in buckets if b.count is not None] == [3600, 3600]


def test_open_range_spans_the_covered_days(engine: Engine) -> None:
    record(engine, "r1", n=1, span=(T0, T0 + timedelta(days=1)))
    assert [(b.start.date(), b.count) for b in bucket_counts(engine, CAM)] == [
        (date(2024, 5, 1), 1),
        (date(2024, 5, 2), 0),
    ]


def test_partial_coverage_is_visible(engine: Engine) -> None:
    record(engine, "r1", n=1, span=(T0, T0 + timedelta(minutes=30)))
    [bucket] = bucket_counts(engine, CAM, start=DAY, end=DAY)
    assert (bucket.count, bucket.covered_s) == (1, 1800)


def test_fall_back_day_is_25_hours_from_the_database(engine: Engine) -> None:
    ensure_camera(engine, CAM, "America/New_York")
    midnight = datetime(2024, 11, 3, 4, 0, tzinfo=UTC)  # 00:00 EDT
    record(engine, "r1", n=3, span=(midnight, midnight + timedelta(hours=25)))
    buckets = bucket_counts(engine, CAM, start=date(2024, 11, 3), end=date(2024, 11, 3))
    assert [(b.count, b.covered_s) for b in buckets] == [(3, 25 * 3600)]
    assert len(bucket_counts(engine, CAM, width="hourly", start=date(2024, 11, 3))) == 25


def test_as_of_never_looks_ahead(engine: Engine) -> None:
    """A query at an instant returns what was published by then, not a later reprocessing."""
    before_any = datetime.now(UTC)
    time.sleep(0.01)
    record(engine, "v1", n=3, model="m1")
    between = datetime.now(UTC)
    time.sleep(0.01)
    record(engine, "v2", n=5, model="m2")
    assert daily_count(engine) == 5
    assert daily_count(engine, as_of=between) == 3
    assert daily_count(engine, as_of=before_any) is None, "nothing known yet: NULL, not 0"
    assert bucket_counts(engine, CAM, as_of=before_any) == []


def test_model_version_selects_a_vintage(engine: Engine) -> None:
    record(engine, "v1", n=3, model="m1")
    record(engine, "v2", n=5, model="m2")
    assert daily_count(engine, model_version="m1") == 3
    assert daily_count(engine, model_version="m2") == 5
    assert daily_count(engine, model_version="m3") is None


def test_a_run_still_running_is_invisible(engine: Engine) -> None:
    record(engine, "v1", n=3)
    record(engine, "v2", n=5, model="m2", finish=False)
    assert daily_count(engine) == 3
    assert daily_count(engine, model_version="m2") is None


def test_different_sources_add_up(engine: Engine) -> None:
    record(engine, "a", n=2, source="a.mp4")
    later = (T0 + timedelta(hours=1), T0 + timedelta(hours=2))
    record(engine, "b", n=3, source="b.mp4", span=later)
    [bucket] = bucket_counts(engine, CAM, start=DAY, end=DAY)
    assert (bucket.count, bucket.covered_s) == (5, 7200)


def test_rerun_with_the_same_run_id_is_idempotent(engine: Engine) -> None:
    record(engine, "r1", n=4)
    first = bucket_counts(engine, CAM, width="hourly", start=DAY, end=DAY)
    record(engine, "r1", n=4)
    assert bucket_counts(engine, CAM, width="hourly", start=DAY, end=DAY) == first
    visible = select(func.count()).where(CoverageRow.attempt_id.in_(visible_runs(CAM, as_of=NOW())))
    with engine.connect() as conn:
        assert conn.scalar(visible.select_from(CoverageRow)) == 1


def test_line_and_direction_filters(engine: Engine) -> None:
    begin_run(engine, RunInfo("r1", CAM, "a.mp4", "m1", "cfg", T0))
    add_crossings(engine, [crossing(T0, 1, "r1"), crossing(T0, 2, "r1", line_id="exit")])
    add_coverage(engine, "r1", T0, T0 + timedelta(hours=1), 10)
    finish_run(engine, "r1", status="complete", frames_analysed=10, media_start=T0, media_end=T0)
    every = bucket_counts(engine, CAM, start=DAY, end=DAY)
    assert [(b.line_id, b.count) for b in every] == [("exit", 1), ("gate", 1)]
    assert [b.line_id for b in bucket_counts(engine, CAM, start=DAY, line_id="exit")] == ["exit"]
    assert bucket_counts(engine, CAM, start=DAY, direction_name="south") == []


def test_available_at_is_set_when_complete(engine: Engine) -> None:
    record(engine, "done", n=0)
    record(engine, "open", n=0, source="b.mp4", finish=False)
    runs = {r.run_id: r for r in list_runs(engine)}
    assert runs["done"].available_at == runs["done"].finished_at is not None
    assert runs["open"].available_at is None


@pytest.mark.parametrize(
    ("setup", "span", "message"),
    [
        ("none", (T0, T0), "unknown run 'r1'"),
        ("complete", (T0, T0), "it takes no more coverage"),
        ("running", (T0, T0 - timedelta(seconds=1)), "is before media_start"),
        ("running", (T0.replace(tzinfo=None), T0), "naive"),
    ],
)
def test_add_coverage_rejects_bad_spans(
    engine: Engine, setup: str, span: tuple[datetime, datetime], message: str
) -> None:
    if setup != "none":
        record(engine, "r1", n=0, finish=setup == "complete")
    with pytest.raises(StorageError, match=message):
        add_coverage(engine, "r1", span[0], span[1], frames_analysed=1)


def test_naive_as_of_is_rejected(engine: Engine) -> None:
    with pytest.raises(StorageError, match="as_of"):
        bucket_counts(engine, CAM, as_of=datetime(2024, 5, 1))


@pytest.mark.parametrize(
    ("width", "start", "end", "message"),
    [
        ("hourly", DAY - timedelta(days=366), DAY, "hourly buckets .* span 367 days"),
        ("daily", date(1899, 12, 31), DAY, "day 1899-12-31"),
        ("daily", DAY, date(9999, 12, 31), "day 9999-12-31"),
    ],
)
def test_unbounded_ranges_are_refused_by_name(
    engine: Engine, width: str, start: date, end: date, message: str
) -> None:
    """A range far longer than a year of hours, or days beyond what time zones can reach, is a
    clear error, not an answer of millions of rows or an overflow."""
    record(engine, "r1", n=1)
    with pytest.raises(StorageError, match=message):
        bucket_counts(engine, CAM, width=width, start=start, end=end)
    with pytest.raises(StorageError, match="day "):
        daily_counts(engine, CAM, start=date(1, 1, 1))


def test_a_year_of_hours_is_answered(engine: Engine) -> None:
    record(engine, "r1", n=1)
    buckets = bucket_counts(engine, CAM, width="hourly", start=DAY - timedelta(days=365), end=DAY)
    assert len(buckets) == 366 * 24 and sum(b.count or 0 for b in buckets) == 1


def test_bucket_frame_is_indexed_by_local_start(engine: Engine) -> None:
    ensure_camera(engine, CAM, "Asia/Jakarta")
    record(engine, "r1", n=2, span=(T0, T0 + timedelta(hours=1)))
    frame = bucket_frame(engine, CAM, width="hourly", start=date(2024, 5, 1), end=DAY)
    assert str(frame.index.tz) == "Asia/Jakarta" and frame.index.name == "start"
    assert str(frame["count"].dtype) == "Int64"
    assert frame.loc[pd.Timestamp("2024-05-01 17:00", tz="Asia/Jakarta"), "count"] == 2
    assert frame["count"].isna().sum() == 23


def test_migration_0002_backfills_runs_completed_before_it(tmp_path: Path) -> None:
    """Databases written before coverage existed keep their counts after the upgrade."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, "0001")
    old = create_engine(url)
    end = T0 + timedelta(hours=1)
    schema = MetaData()
    schema.reflect(old)  # the tables as revision 0001 made them, not as the models are now
    with old.begin() as conn:
        conn.execute(insert(CameraRow).values(id=CAM, timezone="UTC", created_at=T0))
        conn.execute(
            insert(schema.tables["runs"]).values(
                run_id="r0",
                camera_id=CAM,
                source="a.mp4",
                model_version="m0",
                config_hash="c",
                code_version="0",
                started_at=T0,
                finished_at=end,
                status="complete",
                frames_analysed=9,
                media_start=T0,
                media_end=end,
            )
        )
        conn.execute(
            insert(CrossingRow).values(
                run_id="r0",
                camera_id=CAM,
                line_id="gate",
                track_id=1,
                class_name="truck",
                direction="in",
                direction_name="north",
                ts=T0,
                confidence=0.9,
                model_version="m0",
            )
        )
    old.dispose()
    engine = open_database(url, create=False)
    [run] = list_runs(engine)
    assert run.available_at == end
    [bucket] = bucket_counts(engine, CAM, start=DAY, end=DAY)
    assert (bucket.count, bucket.covered_s) == (1, 3600.0)
    engine.dispose()
