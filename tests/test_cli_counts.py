"""`truckcount counts` and `db upgrade`: formats, filters, and NULL printed apart from 0."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from truckcount.cli import app
from truckcount.storage import (
    add_coverage,
    add_crossings,
    begin_run,
    ensure_camera,
    finish_run,
    list_runs,
    open_database,
)
from truckcount.types import Crossing, Direction, RunInfo, VehicleClass

runner = CliRunner()
T0 = datetime(2024, 5, 1, 3, 0, tzinfo=UTC)  # 10:00 in Jakarta


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A database where camera km39 (Jakarta) analysed 10:00-12:00 local and saw 2 trucks at 10."""
    url = f"sqlite:///{tmp_path}/c.db"
    engine = open_database(url)
    ensure_camera(engine, "km39", "Asia/Jakarta")
    begin_run(engine, RunInfo("r1", "km39", "a.mp4", "m1", "cfg", T0))
    add_crossings(
        engine,
        [
            Crossing(
                "km39",
                "gate",
                i,
                VehicleClass.TRUCK,
                Direction.IN,
                "north",
                T0 + timedelta(minutes=i),
                0.9,
                "m1",
                "r1",
            )
            for i in (1, 2)
        ],
    )
    add_coverage(engine, "r1", T0, T0 + timedelta(hours=2), frames_analysed=36000)
    finish_run(
        engine,
        "r1",
        status="complete",
        frames_analysed=36000,
        media_start=T0,
        media_end=T0 + timedelta(hours=2),
    )
    engine.dispose()
    return url


def counts(url: str, *args: str) -> str:
    result = runner.invoke(app, ["counts", "--camera", "km39", "--db", url, *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_daily_table_has_the_day_total_and_coverage(url: str) -> None:
    out = counts(url).splitlines()
    assert out[1].split() == ["local", "day", "gate:north", "total", "covered"]
    assert out[-1].split() == ["2024-05-01", "2", "2", "2.0", "h", "(8.33%)"]


def test_hourly_csv_prints_uncovered_hours_empty_and_quiet_hours_zero(url: str) -> None:
    rows = list(csv.DictReader(io.StringIO(counts(url, "--hourly", "--format", "csv"))))
    by_hour = {r["start"][11:16]: (r["count"], r["covered_s"]) for r in rows}
    assert len(rows) == 24
    assert by_hour["10:00"] == ("2", "3600.0")
    assert by_hour["11:00"] == ("0", "3600.0")
    assert by_hour["12:00"] == ("", "0.0")
    assert {r["truck_share"] for r in rows} == {""}, "no presence classifier ran: no share"


def test_configured_directions_without_crossings_read_zero_not_absent(
    url: str, tmp_path: Path
) -> None:
    """A covered day where a configured direction saw nothing reads 0, not a missing column."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "cameras: [{id: km39, timezone: Asia/Jakarta, lines: [{id: gate, "
        "directions: {in: north, out: south}}]}]\n"
    )
    out = counts(url, "--config", str(cfg)).splitlines()
    assert out[1].split() == ["local", "day", "gate:north", "gate:south", "total", "covered"]
    assert out[-1].split()[:4] == ["2024-05-01", "2", "0", "2"]


def test_json_prints_null_for_uncovered(url: str) -> None:
    records = json.loads(counts(url, "--hourly", "--format", "json", "--from", "2024-05-01"))
    assert [r["count"] for r in records[9:13]] == [None, 2, 0, None]
    assert records[10]["start"] == "2024-05-01T10:00:00+07:00"


def test_as_of_before_the_run_shows_nothing_known(url: str) -> None:
    out = counts(
        url, "--as-of", "2020-01-01T00:00:00+00:00", "--from", "2024-05-01", "--to", "2024-05-01"
    )
    assert out.splitlines()[-1].split() == ["2024-05-01", "0", "s", "(0.00%)"]


def test_model_version_and_line_filters(url: str) -> None:
    assert "gate:north" in counts(url, "--model-version", "m1", "--line", "gate")
    assert counts(url, "--model-version", "m9").endswith("(no analysed video in this range)\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--line", "exit"],
            "has no line 'exit' in its config or its stored crossings (known: gate)",
        ),
        (
            ["--direction", "south"],
            "has no direction 'south' in its config or its stored crossings",
        ),
        (["--line", "gate", "--direction", "south"], "(known: north)"),
    ],
)
def test_a_line_or_direction_never_configured_or_counted_is_an_error_not_an_empty_table(
    url: str, args: list[str], message: str
) -> None:
    """A typo must not read as 'no analysed video' (or as a quiet series of zeros)."""
    result = runner.invoke(app, ["counts", "--camera", "km39", "--db", url, *args])
    assert result.exit_code == 1
    assert message in result.output


def test_parquet_file_reads_back_with_nulls_and_local_times(url: str, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    out = tmp_path / "counts.parquet"
    assert counts(url, "--hourly", "--format", "parquet", "--output", str(out)) == ""
    table = pq.read_table(out)
    assert table.column_names == [
        "start",
        "end",
        "line_id",
        "direction_name",
        "class_name",
        "count",
        "covered_s",
        "truck_share",
    ]
    assert str(table.schema.field("start").type) == "timestamp[us, tz=Asia/Jakarta]"
    rows = table.to_pylist()
    assert len(rows) == 24
    by_hour = {r["start"].hour: (r["count"], r["covered_s"]) for r in rows}
    assert (by_hour[9], by_hour[10], by_hour[11], by_hour[12]) == (
        (None, 0.0),
        (2, 3600.0),
        (0, 3600.0),
        (None, 0.0),
    ), "uncovered hours are null, quiet covered hours 0"
    json_counts = [r["count"] for r in json.loads(counts(url, "--hourly", "--format", "json"))]
    assert [r["count"] for r in rows] == json_counts


def test_output_file_takes_text_formats_too(url: str, tmp_path: Path) -> None:
    out = tmp_path / "counts.csv"
    assert counts(url, "--format", "csv", "--output", str(out)) == ""
    assert out.read_text().splitlines()[1].split(",")[5] == "2"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--as-of", "2024-05-01T00:00"], "--as-of '2024-05-01T00:00' needs a UTC offset"),
        (["--from", "May 1"], "--from 'May 1' is not a day"),
        (["--class", "tank"], "unknown class 'tank'"),
        (["--format", "parquet"], "--format parquet writes a file: give --output FILE"),
        (["--format", "parquet", "--output", "/nonexistent/dir/c.parquet"], "cannot write"),
    ],
)
def test_bad_options_give_one_error_line(url: str, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["counts", "--camera", "km39", "--db", url, *args])
    assert result.exit_code == 1
    assert message in result.stderr


def test_db_upgrade_creates_and_migrates_a_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/new/counts.db"
    result = runner.invoke(app, ["db", "upgrade", "--db", url])
    assert result.exit_code == 0, result.output
    assert "schema is up to date" in result.stdout
    engine = open_database(url, create=False)
    assert list_runs(engine) == []
    engine.dispose()
