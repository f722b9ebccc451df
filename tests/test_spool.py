"""The writer spools to a local file while the database cannot be opened, and replays it once.

The database here is a SQLite file whose folder is, at first, a plain file: opening fails the
way an unreachable server does. Making the folder a folder "brings the database back".
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from tests.helpers import Outage
from truckcount.cli import app
from truckcount.storage import (
    StorageError,
    bucket_counts,
    count_crossings,
    list_runs,
    open_database,
)
from truckcount.storage.models import CoverageRow, CrossingRow
from truckcount.storage.spool import database_key, read_records, replay_folder
from truckcount.storage.writer import StorageWriter, default_spool_dir
from truckcount.types import Crossing, Direction, RunInfo, VehicleClass

CAM = "km39"
T0 = datetime(2024, 5, 1, 3, 0, tzinfo=UTC)
DAY = date(2024, 5, 1)


def run_info(run_id: str = "r1") -> RunInfo:
    return RunInfo(run_id, CAM, "a.mp4", "m1", "cfg", T0)


def batch(tracks: range, run_id: str = "r1") -> list[Crossing]:
    return [
        Crossing(
            CAM,
            "gate",
            t,
            VehicleClass.TRUCK,
            Direction.IN,
            "north",
            T0 + timedelta(seconds=t),
            0.9,
            "m1",
            run_id,
        )
        for t in tracks
    ]


def write_run(writer: StorageWriter, run_id: str = "r1", *, finish: bool = True) -> None:
    """A run of 30 crossings in three batches, covering one hour."""
    writer.begin_run(run_info(run_id), "Asia/Jakarta")
    for first in (0, 10, 20):
        writer.add_crossings(batch(range(first, first + 10), run_id))
    if finish:
        end = T0 + timedelta(hours=1)
        writer.add_coverage(run_id, T0, end, 18000)
        writer.finish_run(
            run_id, status="complete", frames_analysed=18000, media_start=T0, media_end=end
        )


def stored(engine: Engine) -> tuple[int, int, int | None, list[str]]:
    """All crossing rows, coverage rows, the day's count, and run statuses."""
    with engine.connect() as conn:
        rows = conn.scalar(select(func.count()).select_from(CrossingRow))
        spans = conn.scalar(select(func.count()).select_from(CoverageRow))
    [bucket] = bucket_counts(engine, CAM, start=DAY, end=DAY)
    return int(rows or 0), int(spans or 0), bucket.count, [r.status for r in list_runs(engine)]


def test_a_run_written_while_the_database_is_down_is_spooled_then_replayed(
    tmp_path: Path,
) -> None:
    outage = Outage(tmp_path)
    writer = StorageWriter(outage.url, outage.spool, retry_s=0)
    write_run(writer)
    [spooled] = outage.spool.glob("*.jsonl")
    ops = [r["op"] for r in read_records(spooled)]
    assert ops == ["begin", "crossings", "crossings", "crossings", "coverage", "finish"]
    assert writer.spooling

    outage.end()
    report = writer.replay()
    assert (report.files, report.records) == (1, 6)
    assert not writer.spooling and list(outage.spool.glob("*")) == []
    engine = outage.engine()
    assert stored(engine) == (30, 1, 30, ["complete"])
    assert writer.replay().records == 0, "replaying again finds nothing"
    writer.close()
    engine.dispose()


def test_replaying_the_same_spool_twice_doubles_nothing(tmp_path: Path) -> None:
    """A replay that died after applying its writes but before deleting the file runs again."""
    outage = Outage(tmp_path)
    writer = StorageWriter(outage.url, outage.spool, retry_s=0)
    write_run(writer)
    [spooled] = outage.spool.glob("*.jsonl")
    saved = tmp_path / "saved.jsonl"
    shutil.copyfile(spooled, saved)
    outage.end()
    writer.replay()
    writer.close()
    engine = outage.engine()
    first = stored(engine)
    shutil.copyfile(saved, spooled)
    assert replay_folder(engine, outage.spool).records == 6
    assert stored(engine) == first == (30, 1, 30, ["complete"])
    engine.dispose()


def test_the_next_write_after_the_outage_replays_the_spool_first(tmp_path: Path) -> None:
    outage = Outage(tmp_path)
    writer = StorageWriter(outage.url, outage.spool, retry_s=0)
    write_run(writer, finish=False)  # begin and 30 crossings spooled
    outage.end()
    writer.add_crossings(batch(range(30, 35)))  # replays, then writes directly
    assert list(outage.spool.glob("*")) == []
    engine = outage.engine()
    assert count_crossings(engine, CAM, include_unfinished=True) == 35
    end = T0 + timedelta(hours=1)
    writer.finish_run("r1", status="complete", frames_analysed=1, media_start=T0, media_end=end)
    assert count_crossings(engine, CAM) == 35
    writer.close()
    engine.dispose()


def test_spool_left_by_a_dead_writer_is_replayed_by_the_next_one(tmp_path: Path) -> None:
    outage = Outage(tmp_path)
    dead = StorageWriter(outage.url, outage.spool, retry_s=0)
    write_run(dead, "r1")
    dead.close()  # still down: the file stays
    assert len(list(outage.spool.glob("*.jsonl"))) == 1
    outage.end()
    writer = StorageWriter(outage.url, outage.spool, retry_s=0)
    write_run(writer, "r2")
    writer.close()
    engine = outage.engine()
    assert [r.run_id for r in list_runs(engine)] == ["r1", "r2"]
    assert count_crossings(engine, CAM) == 30  # r2 is another attempt of the same source
    assert list(outage.spool.glob("*")) == []
    engine.dispose()


def test_db_replay_command(tmp_path: Path) -> None:
    outage = Outage(tmp_path)
    dead = StorageWriter(outage.url, outage.spool, retry_s=0)
    write_run(dead)
    dead.close()
    args = ["db", "replay", "--db", outage.url, "--spool", str(outage.spool)]
    down = CliRunner().invoke(app, args)
    assert down.exit_code == 1 and "error: cannot create" in down.output
    outage.end()
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    assert "replayed 1 spool file(s), 6 write(s)" in done.output
    again = CliRunner().invoke(app, args)
    assert "replayed 0 spool file(s), 0 write(s)" in again.output
    engine = outage.engine()
    assert stored(engine) == (30, 1, 30, ["complete"])
    engine.dispose()


def test_a_torn_last_line_is_ignored_and_other_bad_lines_are_errors(tmp_path: Path) -> None:
    outage = Outage(tmp_path)
    writer = StorageWriter(outage.url, outage.spool, retry_s=0)
    write_run(writer, finish=False)
    writer.close()
    [spooled] = outage.spool.glob("*.jsonl")
    with spooled.open("a") as f:
        f.write('{"op": "cross')  # the process died in the middle of this write
    assert [r["op"] for r in read_records(spooled)][-1] == "crossings"
    lines = spooled.read_text().splitlines()
    spooled.write_text("\n".join([lines[0], "garbage", *lines[1:]]) + "\n")
    with pytest.raises(StorageError, match="line 2 is not valid JSON"):
        read_records(spooled)


def test_bad_values_are_rejected_before_anything_is_spooled(tmp_path: Path) -> None:
    outage = Outage(tmp_path)
    writer = StorageWriter(outage.url, outage.spool, retry_s=0)
    writer.begin_run(run_info(), "UTC")
    with pytest.raises(StorageError, match="more than once"):
        writer.add_crossings(batch(range(2)) + batch(range(1)))
    with pytest.raises(StorageError, match="naive"):
        writer.add_coverage("r1", datetime(2024, 5, 1), T0, 1)
    with pytest.raises(StorageError, match="not open in this writer"):
        writer.add_crossings(batch(range(1), "other"))
    stray = dataclasses.replace(batch(range(1))[0], camera_id="cam9")
    with pytest.raises(StorageError, match="camera 'cam9' given for run 'r1'"):
        writer.add_crossings([stray])
    with pytest.raises(StorageError, match="frames_analysed"):
        writer.finish_run("r1", status="complete", frames_analysed=-1, media_start=T0, media_end=T0)
    [spooled] = outage.spool.glob("*.jsonl")
    assert [json.loads(x)["op"] for x in spooled.read_text().splitlines()] == ["begin"]
    writer.close()


def test_default_spool_dir_is_beside_the_sqlite_file_or_one_per_server_database(
    tmp_path: Path,
) -> None:
    assert default_spool_dir(f"sqlite:///{tmp_path}/c.db") == tmp_path / "c.db.spool"
    pg = default_spool_dir("postgresql+psycopg://u:p@db/counts")
    assert pg.parts[-3:-1] == ("truckcount", "spool") and pg.name.startswith(
        "postgresql-db-counts-"
    )
    assert "p" not in pg.name.split("-")  # no password in a path
    # Another password is the same database; another database or host is not.
    assert default_spool_dir("postgresql+psycopg://u:other@db/counts") == pg
    key = database_key("postgresql+psycopg://u:secret@db:5432/counts")
    assert key == "postgresql+psycopg://u@db:5432/counts"  # what spool files record: no password
    in_query = "postgresql+psycopg://u@db/counts?sslmode=require&password=secret&sslpassword=x"
    assert database_key(in_query) == "postgresql+psycopg://u@db/counts?sslmode=require"
    here = database_key(f"sqlite:///{Path.cwd() / 'c.db'}")
    assert database_key("sqlite:///c.db") == here  # a SQLite file by its absolute path
    assert default_spool_dir("postgresql+psycopg://u:p@db/archive") != pg
    assert default_spool_dir("postgresql+psycopg://u:p@db2/counts") != pg


def test_a_spool_is_replayed_only_into_the_database_it_was_written_for(tmp_path: Path) -> None:
    """Two databases sharing one spool folder: B's writer must not take A's spooled run."""
    outage = Outage(tmp_path)
    dead = StorageWriter(outage.url, outage.spool, retry_s=0)
    write_run(dead, "r1")
    dead.close()  # A is still down: its file stays
    other_url = f"sqlite:///{tmp_path / 'other.db'}"
    other = StorageWriter(other_url, outage.spool, retry_s=0)
    write_run(other, "r2")
    other.close()
    args = ["db", "replay", "--db", other_url, "--spool", str(outage.spool)]
    told = CliRunner().invoke(app, args)
    assert told.exit_code == 0 and "1 spooled for another database, left alone" in told.output
    b = open_database(other_url, create=False)
    assert [r.run_id for r in list_runs(b)] == ["r2"]
    b.dispose()
    outage.end()
    replayed = CliRunner().invoke(
        app, ["db", "replay", "--db", outage.url, "--spool", str(outage.spool)]
    )
    assert "replayed 1 spool file(s)" in replayed.output
    a = outage.engine()
    assert [r.run_id for r in list_runs(a)] == ["r1"]
    a.dispose()


def test_a_database_and_a_spool_that_cannot_be_written_stop_the_run_with_both_named(
    tmp_path: Path,
) -> None:
    """Nothing may be lost silently: with neither the database nor its spool writable (a file
    stands where their folder should be), the run fails and the message names both."""
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    writer = StorageWriter(f"sqlite:///{blocker / 'x.db'}")
    with pytest.raises(StorageError, match=r"cannot spool to .*a-file/x\.db\.spool.*"):
        writer.begin_run(run_info(), "UTC")
