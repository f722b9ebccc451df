"""Specification of truckcount.storage: what is written comes back, and only finished runs count."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, select

from truckcount.storage import (
    RunStatus,
    StorageError,
    add_crossings,
    begin_run,
    camera_timezone,
    count_crossings,
    daily_counts,
    ensure_camera,
    finish_run,
    list_runs,
    open_database,
)
from truckcount.storage.models import Base, CrossingRow
from truckcount.types import Crossing, DailyCount, Direction, RunInfo, VehicleClass

CAM = "cam1"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def utc(text: str) -> datetime:
    """``"2024-03-10 06:59"`` -> aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def crossing(
    ts: datetime,
    track_id: int = 1,
    *,
    run_id: str = "run-a",
    line_id: str = "gate",
    direction: Direction = Direction.IN,
    class_name: VehicleClass = VehicleClass.TRUCK,
) -> Crossing:
    name = "north" if direction is Direction.IN else "south"
    return Crossing(CAM, line_id, track_id, class_name, direction, name, ts, 0.9, "m1", run_id)


def run_info(run_id: str = "run-a", source: str = "a.mp4") -> RunInfo:
    return RunInfo(run_id, CAM, source, "m1", "cfg123", T0, extra={"code_version": "abc"})


def record_run(
    engine: Engine, crossings: Sequence[Crossing], run_id: str = "run-a", *, finish: bool = True
) -> None:
    """Write one run of its own source with these crossings, as the pipeline does."""
    begin_run(engine, run_info(run_id, source=f"{run_id}.mp4"))
    add_crossings(engine, crossings)
    if finish:
        finish_run(
            engine,
            run_id,
            status=RunStatus.COMPLETE,
            frames_analysed=100,
            media_start=T0,
            media_end=T0 + timedelta(hours=1),
        )


def stored_crossings(engine: Engine) -> list[Crossing]:
    with engine.connect() as conn:
        rows = conn.execute(select(CrossingRow).order_by(CrossingRow.id)).all()
    return [
        Crossing(
            r.camera_id,
            r.line_id,
            r.track_id,
            VehicleClass(r.class_name),
            Direction(r.direction),
            r.direction_name,
            r.ts,
            r.confidence,
            r.model_version,
            r.run_id,
        )
        for r in rows
    ]


def days(counts: list[DailyCount]) -> list[tuple[str, str, str, int]]:
    return [(c.day, c.line_id, c.direction_name, c.count) for c in counts]


# --- schema ---------------------------------------------------------------------------------------


def test_migration_creates_exactly_the_models(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_reopening_a_migrated_database_keeps_its_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'counts.db'}"
    first = open_database(url)
    ensure_camera(first, CAM, "UTC")
    record_run(first, [crossing(T0)])
    first.dispose()
    again = open_database(url, create=False)
    assert count_crossings(again, CAM) == 1
    again.dispose()


def test_sqlite_has_wal_and_foreign_keys(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite only")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


# --- writing --------------------------------------------------------------------------------------


def test_crossings_round_trip_as_aware_utc(engine: Engine) -> None:
    jakarta = datetime(2024, 5, 1, 19, 0, 0, 123456, tzinfo=ZoneInfo("Asia/Jakarta"))
    written = [
        crossing(T0, 1),
        crossing(T0 + timedelta(seconds=1.5), 2, direction=Direction.OUT, line_id="exit"),
        crossing(jakarta, 3, class_name=VehicleClass.BUS),
    ]
    record_run(engine, written)
    back = stored_crossings(engine)
    assert back == written
    assert all(c.ts.tzinfo is UTC for c in back)


def test_rerun_of_the_same_run_id_replaces_its_crossings(engine: Engine) -> None:
    """A restarted job reuses its run_id: counts must not double, the new attempt wins."""
    record_run(engine, [crossing(T0, 1), crossing(T0, 2), crossing(T0, 3)])
    record_run(engine, [crossing(T0, 7), crossing(T0, 8)])
    assert count_crossings(engine, CAM) == 2
    assert days(daily_counts(engine, CAM)) == [("2024-05-01", "gate", "north", 2)]
    first, second = list_runs(engine, CAM)
    assert (first.run_id, second.run_id) == ("run-a", "run-a")
    assert first.attempt_id != second.attempt_id
    assert (second.status, second.code_version) == (RunStatus.COMPLETE, "abc")


def test_a_running_rerun_leaves_the_earlier_results_visible(engine: Engine) -> None:
    """Between the start and the end of a rerun readers still see the earlier attempt."""
    record_run(engine, [crossing(T0, 1), crossing(T0, 2)])
    begin_run(engine, run_info(source="run-a.mp4"))
    add_crossings(engine, [crossing(T0, 5)])
    assert count_crossings(engine, CAM) == 2
    assert [r.status for r in list_runs(engine)] == [RunStatus.COMPLETE, RunStatus.RUNNING]
    assert count_crossings(engine, CAM, include_unfinished=True) == 3


def test_a_new_attempt_abandons_an_unfinished_one(engine: Engine) -> None:
    """A crashed attempt stays ``running``; the next attempt of its run marks it failed."""
    crashed = begin_run(engine, run_info())
    latest = begin_run(engine, run_info())
    statuses = {r.attempt_id: r.status for r in list_runs(engine)}
    assert statuses == {crashed: RunStatus.FAILED, latest: RunStatus.RUNNING}
    add_crossings(engine, [crossing(T0, 1)])  # goes to the running attempt
    with pytest.raises(StorageError, match="is failed"):
        add_crossings(engine, [crossing(T0, 2)], attempt_id=crashed)


def test_beginning_a_stored_attempt_again_changes_nothing(engine: Engine) -> None:
    attempt = begin_run(engine, run_info())
    assert begin_run(engine, run_info(), attempt_id=attempt) == attempt
    assert [r.attempt_id for r in list_runs(engine)] == [attempt]
    with pytest.raises(StorageError, match="belongs to run 'run-a'"):
        begin_run(engine, run_info("run-b"), attempt_id=attempt)


def test_reprocessing_a_source_supersedes_the_earlier_run(engine: Engine) -> None:
    """The same recording processed by a new model is a new run; counts must not add both."""
    for run_id, tracks in (("old-model", [1, 2, 3]), ("new-model", [4, 5])):
        begin_run(engine, run_info(run_id, source="same.mp4"))
        add_crossings(engine, [crossing(T0, t, run_id=run_id) for t in tracks])
        finish_run(
            engine, run_id, status="complete", frames_analysed=1, media_start=T0, media_end=T0
        )
    assert days(daily_counts(engine, CAM)) == [("2024-05-01", "gate", "north", 2)]
    assert count_crossings(engine, CAM) == 2


def test_unfinished_run_is_invisible(engine: Engine) -> None:
    """A process that crashes mid-run leaves crossings behind; no count may include them."""
    record_run(engine, [crossing(T0, 1, run_id="done")], run_id="done")
    unfinished = [crossing(T0, 2, run_id="crashed"), crossing(T0, 3, run_id="crashed")]
    record_run(engine, unfinished, run_id="crashed", finish=False)
    assert days(daily_counts(engine, CAM)) == [("2024-05-01", "gate", "north", 1)]
    assert count_crossings(engine, CAM) == 1
    assert count_crossings(engine, CAM, include_unfinished=True) == 3


def test_failed_run_is_invisible(engine: Engine) -> None:
    begin_run(engine, run_info())
    add_crossings(engine, [crossing(T0)])
    finish_run(engine, "run-a", status="failed", frames_analysed=3, media_start=T0, media_end=None)
    assert daily_counts(engine, CAM) == []
    assert list_runs(engine)[0].status is RunStatus.FAILED


@pytest.mark.parametrize(
    ("setup", "batch", "message"),
    [
        ("none", [crossing(T0)], "unknown run 'run-a'"),
        ("running", [crossing(T0, 1), crossing(T0, 1)], "track 1 crosses line 'gate' more"),
        ("complete", [crossing(T0, 9)], "run 'run-a' is complete"),
        ("running-other-camera", [crossing(T0)], "given for run 'run-a' of camera 'cam2'"),
    ],
)
def test_add_crossings_rejects_what_would_corrupt_counts(
    engine: Engine, setup: str, batch: list[Crossing], message: str
) -> None:
    if setup == "running-other-camera":
        ensure_camera(engine, "cam2", "UTC")
        begin_run(engine, RunInfo("run-a", "cam2", "a.mp4", "m1", "cfg", T0))
    elif setup != "none":
        record_run(engine, [], finish=setup == "complete")
    with pytest.raises(StorageError, match=message):
        add_crossings(engine, batch)


def test_duplicate_of_a_stored_crossing_is_a_storage_error(engine: Engine) -> None:
    record_run(engine, [crossing(T0, 1)], finish=False)
    with pytest.raises(StorageError, match="crossings rejected"):
        add_crossings(engine, [crossing(T0, 1)])
    assert count_crossings(engine, CAM, include_unfinished=True) == 1


def test_finish_run_rules(engine: Engine) -> None:
    with pytest.raises(StorageError, match="unknown run 'nope'"):
        finish_run(
            engine, "nope", status="complete", frames_analysed=0, media_start=None, media_end=None
        )
    record_run(engine, [])
    with pytest.raises(StorageError, match="already complete"):
        finish_run(
            engine, "run-a", status="failed", frames_analysed=0, media_start=None, media_end=None
        )
    with pytest.raises(StorageError, match="expected 'complete' or 'failed'"):
        finish_run(
            engine, "run-a", status="running", frames_analysed=0, media_start=None, media_end=None
        )


def test_naive_times_are_rejected(engine: Engine) -> None:
    naive = RunInfo("run-n", CAM, "a.mp4", "m1", "cfg", datetime(2024, 5, 1, 12))
    with pytest.raises(StorageError, match="naive"):
        begin_run(engine, naive)


def test_camera_time_zone_can_change(engine: Engine) -> None:
    assert camera_timezone(engine, CAM) == "UTC"
    ensure_camera(engine, CAM, "Asia/Jakarta")
    assert camera_timezone(engine, CAM) == "Asia/Jakarta"


def test_list_runs_oldest_first_per_camera(engine: Engine) -> None:
    ensure_camera(engine, "cam2", "UTC")
    begin_run(engine, RunInfo("late", CAM, "b.mp4", "m1", "cfg", T0 + timedelta(hours=1)))
    begin_run(engine, RunInfo("early", CAM, "a.mp4", "m1", "cfg", T0))
    begin_run(engine, RunInfo("other", "cam2", "c.mp4", "m1", "cfg", T0))
    assert [r.run_id for r in list_runs(engine, CAM)] == ["early", "late"]
    assert len(list_runs(engine)) == 3


def test_unknown_time_zone_is_rejected(engine: Engine) -> None:
    with pytest.raises(StorageError, match="unknown IANA time zone 'Mars/Olympus'"):
        ensure_camera(engine, "cam9", "Mars/Olympus")


# --- daily counts ---------------------------------------------------------------------------------


def test_daily_counts_group_by_local_day_line_and_direction(engine: Engine) -> None:
    """Jakarta is UTC+7: 18:30 UTC on the 15th is already the 16th there."""
    ensure_camera(engine, CAM, "Asia/Jakarta")
    record_run(
        engine,
        [
            crossing(utc("2021-11-15 16:59"), 1),  # 23:59 local, the 15th
            crossing(utc("2021-11-15 18:30"), 2),  # 01:30 local, the 16th
            crossing(utc("2021-11-15 18:31"), 3, direction=Direction.OUT),
            crossing(utc("2021-11-15 18:32"), 4, line_id="exit"),
            crossing(utc("2021-11-15 18:33"), 5, class_name=VehicleClass.CAR),
        ],
    )
    assert days(daily_counts(engine, CAM)) == [
        ("2021-11-15", "gate", "north", 1),
        ("2021-11-16", "exit", "north", 1),
        ("2021-11-16", "gate", "north", 1),
        ("2021-11-16", "gate", "south", 1),
    ]
    assert days(daily_counts(engine, CAM, class_name=VehicleClass.CAR)) == [
        ("2021-11-16", "gate", "north", 1)
    ]
    assert days(daily_counts(engine, CAM, tz="UTC")) == [
        ("2021-11-15", "exit", "north", 1),
        ("2021-11-15", "gate", "north", 2),
        ("2021-11-15", "gate", "south", 1),
    ]


# New York: 2024-03-10 02:00 EST -> 03:00 EDT (day of 23 h); 2024-11-03 02:00 EDT -> 01:00 EST
# (day of 25 h). Local midnight is 05:00 UTC in winter and 04:00 UTC in summer.
DST_CASES = [
    ("2024-03-10 04:59", "2024-03-09"),  # 23:59 EST
    ("2024-03-10 05:00", "2024-03-10"),  # 00:00 EST
    ("2024-03-10 06:59", "2024-03-10"),  # 01:59 EST, just before the jump
    ("2024-03-10 07:00", "2024-03-10"),  # 03:00 EDT
    ("2024-03-11 03:59", "2024-03-10"),  # 23:59 EDT
    ("2024-03-11 04:00", "2024-03-11"),  # 00:00 EDT
    ("2024-11-03 03:59", "2024-11-02"),  # 23:59 EDT
    ("2024-11-03 04:00", "2024-11-03"),  # 00:00 EDT
    ("2024-11-03 05:30", "2024-11-03"),  # 01:30 EDT, first pass
    ("2024-11-03 06:30", "2024-11-03"),  # 01:30 EST, second pass
    ("2024-11-04 04:59", "2024-11-03"),  # 23:59 EST
    ("2024-11-04 05:00", "2024-11-04"),  # 00:00 EST
]


@pytest.mark.parametrize(("ts", "local_day"), DST_CASES)
def test_local_day_across_dst_changes(engine: Engine, ts: str, local_day: str) -> None:
    ensure_camera(engine, CAM, "America/New_York")
    record_run(engine, [crossing(utc(ts))])
    assert [c.day for c in daily_counts(engine, CAM)] == [local_day]
    day = date.fromisoformat(local_day)
    assert [c.day for c in daily_counts(engine, CAM, start=day, end=day)] == [local_day]
    before, after = day - timedelta(days=1), day + timedelta(days=1)
    assert daily_counts(engine, CAM, start=after) == []
    assert daily_counts(engine, CAM, end=before) == []


def test_date_range_is_inclusive_in_local_days(engine: Engine) -> None:
    ensure_camera(engine, CAM, "America/New_York")
    stamps = [utc(ts) for ts, _ in DST_CASES]
    record_run(engine, [crossing(ts, i) for i, ts in enumerate(stamps)])
    counts = daily_counts(engine, CAM, start=date(2024, 11, 3), end=date(2024, 11, 3))
    assert days(counts) == [("2024-11-03", "gate", "north", 4)]
    whole = daily_counts(engine, CAM, start=date(2024, 3, 9), end=date(2024, 11, 4))
    assert sum(c.count for c in whole) == len(stamps)


def test_end_before_start_is_an_error(engine: Engine) -> None:
    with pytest.raises(StorageError, match="before start"):
        daily_counts(engine, CAM, start=date(2024, 1, 2), end=date(2024, 1, 1))
