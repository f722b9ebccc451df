"""Truck presence: per-slot tallies stored per run, read back as each bucket's ``truck_share``.

``truck_share`` is the share of the frames the presence classifier looked at in a bucket that hold
a truck: sum(truck_frames) / sum(frames) over the 15-minute slots of the visible runs that start
in the bucket. It is None, never 0, where no slot lies in the bucket.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, func, insert, inspect, select, text
from typer.testing import CliRunner

from tests.helpers import Outage
from truckcount.cli import app
from truckcount.storage import (
    StorageError,
    add_coverage,
    add_crossings,
    begin_run,
    bucket_counts,
    bucket_frame,
    ensure_camera,
    finish_run,
    open_database,
)
from truckcount.storage.database import MIGRATIONS
from truckcount.storage.models import CameraRow, CoverageRow, CrossingRow, PresenceRow, RunRow
from truckcount.storage.presence import add_presence
from truckcount.storage.spool import begin_record, presence_record, read_records, replay_folder
from truckcount.storage.writer import StorageWriter
from truckcount.types import Bucket, Crossing, Direction, PresenceSlot, RunInfo, VehicleClass

CAM = "cam1"
KOLKATA = "Asia/Kolkata"  # UTC+05:30: local hours start at :30 UTC
ZONE = ZoneInfo(KOLKATA)
DAY = date(2024, 5, 1)
T0 = datetime(2024, 5, 1, 4, 30, tzinfo=UTC)  # 10:00 in Kolkata


def at(minutes: int) -> datetime:
    """``minutes`` after 10:00 Kolkata time on 2024-05-01."""
    return T0 + timedelta(minutes=minutes)


def slot(start: datetime, frames: int, trucks: int, camera: str = CAM) -> PresenceSlot:
    return PresenceSlot(camera, start, frames, trucks)


def crossings(run_id: str, ts: datetime) -> list[Crossing]:
    """One truck on each of two series, so both series are reported."""
    return [
        Crossing(CAM, line, i, VehicleClass.TRUCK, way, name, ts, 0.9, "m", run_id)
        for i, (line, way, name) in enumerate(
            [("gate", Direction.IN, "north"), ("exit", Direction.OUT, "south")]
        )
    ]


def record(
    engine: Engine,
    run_id: str,
    slots: Sequence[PresenceSlot],
    *,
    spans: Sequence[tuple[datetime, datetime]] = ((T0, at(120)),),
    source: str = "a.mp4",
    model: str = "m1",
    finish: bool = True,
) -> None:
    """One run of ``source`` covering ``spans``, with two crossings and the given presence."""
    begin_run(engine, RunInfo(run_id, CAM, source, model, "cfg", T0))
    add_crossings(engine, crossings(run_id, spans[0][0]))
    for start, end in spans:
        add_coverage(engine, run_id, start, end, frames_analysed=100)
    add_presence(engine, run_id, slots)
    first, last = spans[0][0], spans[-1][1]
    if finish:
        finish_run(
            engine, run_id, status="complete", frames_analysed=9, media_start=first, media_end=last
        )


def shares(buckets: Sequence[Bucket], *, hour: bool = True) -> dict[object, float | None]:
    """truck_share per Kolkata hour (or day) of the ``gate`` series."""
    local = [(b.start.astimezone(ZONE), b) for b in buckets if b.line_id == "gate"]
    return {(t.hour if hour else t.date()): b.truck_share for t, b in local}


def daily_share(engine: Engine, **options: object) -> float | None:
    [bucket] = bucket_counts(engine, CAM, start=DAY, end=DAY, tz=KOLKATA, line_id="gate", **options)
    return bucket.truck_share


def stored_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(PresenceRow)) or 0)


# --- reading: local hours and days -------------------------------------------------------------

# 10:00-11:00 Kolkata: 100 trucks of 400 frames. Grouped by UTC hour instead, 04:00-05:00 UTC
# would hold only the first two slots (40 of 200) and 05:00-06:00 UTC the next four.
HOUR_10 = [slot(at(0), 100, 10), slot(at(15), 100, 30), slot(at(30), 100, 0), slot(at(45), 100, 60)]
HOUR_11 = [slot(at(60), 50, 50), slot(at(105), 150, 25)]  # 75 of 200
EVE = datetime(2024, 4, 30, 18, 15, tzinfo=UTC)  # 23:45 on 30 April in Kolkata
NEAR_MIDNIGHT = [slot(EVE, 10, 10), slot(EVE + timedelta(minutes=15), 10, 0)]  # 2nd: 1 May
MIDNIGHT_SPAN = (EVE, EVE + timedelta(minutes=30))


def test_slots_tile_local_hours_and_days_in_a_half_hour_zone(engine: Engine) -> None:
    ensure_camera(engine, CAM, KOLKATA)
    spans = (MIDNIGHT_SPAN, (T0, at(180)))  # 10:00-13:00 covered; no slot after 11:45
    record(engine, "r1", [*NEAR_MIDNIGHT, *HOUR_10, *HOUR_11], spans=spans)

    hourly = bucket_counts(engine, CAM, width="hourly", start=DAY, end=DAY)
    assert len(hourly) == 48  # two series of 24 local hours
    expected = {h: None for h in range(24)} | {0: 0.0, 10: 0.25, 11: 0.375}
    assert shares(hourly) == pytest.approx(expected)
    by_hour = {b.start.astimezone(ZONE).hour: b for b in hourly if b.line_id == "gate"}
    assert by_hour[0].truck_share == 0.0, "frames without a truck read 0, not None"
    assert (by_hour[12].count, by_hour[12].truck_share) == (0, None), "covered, not classified"
    assert by_hour[9].count is None and by_hour[9].truck_share is None
    north = [b.truck_share for b in hourly if b.line_id == "gate"]
    south = [b.truck_share for b in hourly if b.line_id == "exit"]
    assert north == south, "the share is the camera's: every series gets the same"

    daily = bucket_counts(engine, CAM, start=date(2024, 4, 30), end=DAY)
    assert shares(daily, hour=False) == pytest.approx(
        {date(2024, 4, 30): 1.0, DAY: (0 + 100 + 75) / (10 + 400 + 200)}
    )


def test_a_covered_bucket_without_slots_reads_none(engine: Engine) -> None:
    record(engine, "r1", [])
    [bucket] = bucket_counts(engine, CAM, start=DAY, end=DAY, tz=KOLKATA, line_id="gate")
    assert bucket.count == 1 and bucket.covered_s == 7200
    assert bucket.truck_share is None


def test_bucket_frame_has_truck_share_with_nan_for_none(engine: Engine) -> None:
    ensure_camera(engine, CAM, KOLKATA)
    record(engine, "r1", HOUR_10)
    frame = bucket_frame(engine, CAM, width="hourly", start=DAY, end=DAY, line_id="gate")
    assert str(frame["truck_share"].dtype) == "float64"
    assert frame["truck_share"].iloc[10] == pytest.approx(0.25)
    assert frame["truck_share"].isna().sum() == 23


# --- reading: vintages and as-of ----------------------------------------------------------------


def test_as_of_and_model_version_select_the_runs_whose_slots_count(engine: Engine) -> None:
    before_any = datetime.now(UTC)
    record(engine, "a1", [slot(at(0), 100, 25)], source="a.mp4")
    between = datetime.now(UTC)
    record(engine, "b1", [slot(at(15), 100, 75)], source="b.mp4", model="m2")
    record(engine, "c1", [slot(at(30), 100, 100)], source="c.mp4", finish=False)

    assert daily_share(engine) == pytest.approx(0.5), "sources add up frames; running c1 unseen"
    assert daily_share(engine, as_of=between) == pytest.approx(0.25), "b1 was not yet available"
    assert daily_share(engine, model_version="m1") == pytest.approx(0.25)
    assert daily_share(engine, model_version="m2") == pytest.approx(0.75)
    assert daily_share(engine, as_of=before_any) is None


def test_a_reprocessing_of_the_source_replaces_the_share(engine: Engine) -> None:
    record(engine, "v1", [slot(at(0), 100, 20)], model="m1")
    record(engine, "v2", [slot(at(0), 100, 80)], model="m2")
    assert daily_share(engine) == pytest.approx(0.8)


def test_a_rerun_replaces_the_share_instead_of_doubling_it(engine: Engine) -> None:
    record(engine, "r1", [slot(at(0), 100, 20), slot(at(15), 100, 20)])
    assert daily_share(engine) == pytest.approx(0.2)
    record(engine, "r1", [slot(at(0), 100, 60), slot(at(15), 300, 60)])
    assert daily_share(engine) == pytest.approx(120 / 400), "not (40 + 120) / (200 + 400)"
    begin_run(engine, RunInfo("r1", CAM, "a.mp4", "m1", "cfg", T0))  # a rerun that crashes
    add_presence(engine, "r1", [slot(at(0), 10, 10)])
    assert daily_share(engine) == pytest.approx(120 / 400), "a running rerun changes nothing"
    assert stored_rows(engine) == 5


# --- writing: validation ------------------------------------------------------------------------


def test_bad_presence_is_a_storage_error_and_writes_nothing(engine: Engine) -> None:
    with pytest.raises(StorageError, match="presence for unknown run 'nope'; call begin_run first"):
        add_presence(engine, "nope", [slot(at(0), 1, 0)])
    record(engine, "r1", [], finish=False)
    good, stray = slot(at(0), 10, 1), slot(at(15), 10, 1, camera="cam2")
    with pytest.raises(
        StorageError, match="presence slot of camera 'cam2' given for run 'r1' of camera 'cam1'"
    ):
        add_presence(engine, "r1", [good, stray])
    with pytest.raises(StorageError, match="slot 2024-05-01T04:30:00\\+00:00 given more than once"):
        add_presence(engine, "r1", [good, slot(at(0), 5, 5)])
    assert stored_rows(engine) == 0, "a rejected call writes none of its slots"
    assert add_presence(engine, "r1", [good]) == 1
    with pytest.raises(StorageError, match="slot 2024-05-01T04:30:00\\+00:00 is already stored"):
        add_presence(engine, "r1", [good])
    assert add_presence(engine, "r1", [good, slot(at(15), 10, 1)], replay=True) == 1
    assert add_presence(engine, "r1", []) == 0
    finish_run(engine, "r1", status="complete", frames_analysed=1, media_start=T0, media_end=T0)
    with pytest.raises(StorageError, match="run 'r1' is complete; it takes no more presence"):
        add_presence(engine, "r1", [slot(at(30), 1, 1)])
    assert stored_rows(engine) == 2


def test_writer_stores_presence_directly(engine: Engine, tmp_path: Path) -> None:
    writer = StorageWriter(engine.url.render_as_string(hide_password=False), tmp_path / "spool")
    writer.begin_run(RunInfo("w1", CAM, "a.mp4", "m1", "cfg", T0), "UTC")
    writer.add_crossings(crossings("w1", T0))
    writer.add_coverage("w1", T0, at(60), 100)
    writer.add_presence("w1", [])
    writer.add_presence("w1", HOUR_10)
    with pytest.raises(StorageError, match="camera 'cam2' given for run 'w1'"):
        writer.add_presence("w1", [slot(at(60), 1, 1, camera="cam2")])
    with pytest.raises(StorageError, match="not open in this writer"):
        writer.add_presence("other", HOUR_10)
    writer.finish_run("w1", status="complete", frames_analysed=100, media_start=T0, media_end=T0)
    writer.close()
    assert not (tmp_path / "spool").exists() or list((tmp_path / "spool").iterdir()) == []
    assert daily_share(engine) == pytest.approx(0.25)


# --- writing: spooled while the database is down ------------------------------------------------


def test_presence_spooled_during_an_outage_is_replayed_exactly_once(tmp_path: Path) -> None:
    outage = Outage(tmp_path)
    writer = StorageWriter(outage.url, outage.spool, retry_s=0)
    writer.begin_run(RunInfo("r1", CAM, "a.mp4", "m1", "cfg", T0), KOLKATA)
    writer.add_crossings(crossings("r1", T0))
    writer.add_coverage("r1", T0, at(120), 100)
    writer.add_presence("r1", HOUR_10)
    writer.add_presence("r1", [])  # nothing to spool
    with pytest.raises(StorageError, match="camera 'cam2'"):
        writer.add_presence("r1", [slot(at(60), 1, 1, camera="cam2")])  # nor a bad write
    writer.add_presence("r1", HOUR_11)
    writer.finish_run("r1", status="complete", frames_analysed=100, media_start=T0, media_end=T0)
    [spooled] = outage.spool.glob("*.jsonl")
    ops = [r["op"] for r in read_records(spooled)]
    assert ops == ["begin", "crossings", "coverage", "presence", "presence", "finish"]
    saved = tmp_path / "saved.jsonl"
    shutil.copyfile(spooled, saved)

    outage.end()
    assert writer.replay().records == 6
    writer.close()
    engine = open_database(outage.url, create=False)
    hourly = bucket_counts(engine, CAM, width="hourly", start=DAY, end=DAY, line_id="gate")
    assert shares(hourly)[10] == pytest.approx(0.25) and shares(hourly)[11] == pytest.approx(0.375)
    assert stored_rows(engine) == 6

    shutil.copyfile(saved, spooled)  # a replay that died before deleting the file runs again
    assert replay_folder(engine, outage.spool).records == 6
    assert stored_rows(engine) == 6
    assert bucket_counts(engine, CAM, width="hourly", start=DAY, end=DAY, line_id="gate") == hourly
    engine.dispose()


def test_a_presence_write_whose_commit_was_not_acknowledged_is_replayed_once(
    tmp_path: Path,
) -> None:
    """Slots that reached the database although the write was spooled are not stored twice."""
    engine = open_database(f"sqlite:///{tmp_path / 'counts.db'}")
    run = RunInfo("r1", CAM, "a.mp4", "m1", "cfg", T0)
    ensure_camera(engine, CAM, "UTC")
    begin_run(engine, run, attempt_id="att1")
    add_presence(engine, "r1", HOUR_10[:2])  # committed, but the writer saw the connection drop
    spool = tmp_path / "spool"
    spool.mkdir()
    records = [begin_record(run, "UTC", "att1"), presence_record(HOUR_10, "r1", "att1")]
    (spool / "att1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert replay_folder(engine, spool).records == 2
    assert stored_rows(engine) == 4
    with engine.connect() as conn:
        frames = conn.scalar(select(func.sum(PresenceRow.frames)))
    assert frames == 400
    engine.dispose()


# --- schema -------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database that no migration has touched, on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    server: Engine = request.getfixturevalue("pg_engine")
    name = f"old_{uuid.uuid4().hex[:12]}"
    with server.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    return server.url.set(database=name).render_as_string(hide_password=False)


def test_migration_0005_upgrades_a_database_created_at_0004(empty_url: str) -> None:
    """Runs stored before presence existed keep their counts and read no share; new runs add it."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", empty_url)
    command.upgrade(cfg, "0004")
    old = create_engine(empty_url)
    assert "presence" not in inspect(old).get_table_names()
    end = at(60)
    with old.begin() as conn:
        conn.execute(insert(CameraRow).values(id=CAM, timezone="UTC", created_at=T0))
        ids = {"attempt_id": "old1", "run_id": "r0", "camera_id": CAM}
        times = {"started_at": T0, "finished_at": end, "available_at": end, "status": "complete"}
        media = {"media_start": T0, "media_end": end, "frames_analysed": 9}
        made_by = {"source": "a", "model_version": "m0", "config_hash": "c", "code_version": "0"}
        conn.execute(insert(RunRow).values(**ids, **times, **media, **made_by))
        span = {"start": T0, "end": end, "frames_analysed": 9, "frames_dropped": 0}
        conn.execute(insert(CoverageRow).values(**ids, **span))
        track = {"line_id": "gate", "track_id": 1, "class_name": "truck", "direction": "in"}
        seen = {"direction_name": "north", "ts": T0, "confidence": 0.9, "model_version": "m0"}
        conn.execute(insert(CrossingRow).values(**ids, **track, **seen))
    old.dispose()

    engine = open_database(empty_url, create=False)
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT version_num FROM alembic_version")) == "0005"
        columns = {c["name"] for c in inspect(conn).get_columns("presence")}
    assert columns == {"id", "attempt_id", "run_id", "camera_id", "start", "frames", "truck_frames"}
    [bucket] = bucket_counts(engine, CAM, start=DAY, end=DAY, tz="UTC")
    assert (bucket.count, bucket.covered_s, bucket.truck_share) == (1, 3600.0, None)
    begin_run(engine, RunInfo("r0", CAM, "a", "m1", "cfg", T0))  # reprocesses source "a"
    add_coverage(engine, "r0", T0, end, frames_analysed=9)
    add_presence(engine, "r0", [slot(T0, 4, 1)])
    finish_run(engine, "r0", status="complete", frames_analysed=9, media_start=T0, media_end=end)
    [bucket] = bucket_counts(engine, CAM, start=DAY, end=DAY, tz="UTC")
    assert (bucket.count, bucket.truck_share) == (0, 0.25)
    engine.dispose()

    command.downgrade(cfg, "0004")
    old = create_engine(empty_url)
    assert "presence" not in inspect(old).get_table_names()
    old.dispose()


# --- outputs ------------------------------------------------------------------------------------


def test_counts_command_prints_the_share_in_every_format(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    engine = open_database(url)
    ensure_camera(engine, CAM, KOLKATA)
    record(engine, "r1", HOUR_10)  # covers 10:00-12:00 Kolkata time
    engine.dispose()
    base = ["counts", "--camera", CAM, "--db", url, "--hourly", "--from", "2024-05-01"]
    base += ["--to", "2024-05-01", "--line", "gate"]

    def counts(*args: str) -> str:
        result = CliRunner().invoke(app, [*base, *args])
        assert result.exit_code == 0, result.output
        return result.stdout

    records = json.loads(counts("--format", "json"))
    assert [r["truck_share"] for r in records[9:13]] == [None, 0.25, None, None]
    assert records[11]["count"] == 0, "hour 11 is covered, but no frame was classified"
    csv_lines = counts("--format", "csv").splitlines()
    assert csv_lines[0].split(",")[-1] == "truck_share"
    assert [line.split(",")[-1] for line in csv_lines[10:13]] == ["", "0.25", ""]
    table = counts().splitlines()
    assert table[1].split()[-2:] == ["truck", "share"]
    assert table[12].split()[-1] == "25.0%" and table[13].split()[-1] == "(100%)"

    import pyarrow.parquet as pq

    out = tmp_path / "c.parquet"
    counts("--format", "parquet", "--output", str(out))
    rows = pq.read_table(out).to_pylist()
    assert [r["truck_share"] for r in rows[9:12]] == [None, 0.25, None], "null, not NaN"
