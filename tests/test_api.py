"""HTTP API: /counts equals `truckcount counts`, clear 4xx errors, bearer token, status, metrics."""

from __future__ import annotations

import csv
import io
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from truckcount import metrics
from truckcount.api import ApiSettings, create_app
from truckcount.cli import app as cli
from truckcount.config import ConfigError, load_config
from truckcount.service import check_binding
from truckcount.storage import (
    add_coverage,
    add_crossings,
    begin_run,
    ensure_camera,
    finish_run,
    open_database,
)
from truckcount.types import Crossing, Direction, RunInfo, VehicleClass

T0 = datetime(2024, 5, 1, 3, 0, tzinfo=UTC)  # 10:00 in Jakarta
TOKEN = "s3cret-token-for-tests"
runner = CliRunner()

CONFIG = """\
storage:
  url: sqlite:///counts.db
cameras:
  - id: km39
    timezone: Asia/Jakarta
    lines:
      - id: gate
        directions: {in: north, out: south}
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """Camera km39 (Jakarta) analysed 10:00-12:00 local on 1 May and saw 2 trucks north at 10."""
    path = tmp_path / "km39.yaml"
    path.write_text(CONFIG)
    engine = open_database(load_config(path).storage.url)
    ensure_camera(engine, "km39", "Asia/Jakarta")
    begin_run(engine, RunInfo("r1", "km39", "a.mp4", "m1", "cfg", T0))
    add_crossings(engine, [_crossing(i) for i in (1, 2)])
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
    return path


def _crossing(i: int) -> Crossing:
    ts = T0 + timedelta(minutes=i)
    return Crossing(
        "km39", "gate", i, VehicleClass.TRUCK, Direction.IN, "north", ts, 0.9, "m1", "r1"
    )


def _client(config: Path, token: str | None = None) -> TestClient:
    cfg = load_config(config)
    return TestClient(create_app(ApiSettings(cfg.storage.url, cfg, token)))


@pytest.fixture
def client(config: Path) -> TestClient:
    return _client(config)


@pytest.mark.parametrize(
    ("query", "cli_args"),
    [
        ("", []),
        ("&granularity=hour", ["--hourly"]),
        (
            "&granularity=hour&from=2024-05-01&to=2024-05-02",
            ["--hourly", "--from", "2024-05-01", "--to", "2024-05-02"],
        ),
        ("&direction=north", ["--direction", "north"]),
        ("&line=gate&class=bus", ["--line", "gate", "--class", "bus"]),
        ("&as_of=2024-01-01T00:00:00%2B00:00", ["--as-of", "2024-01-01T00:00:00+00:00"]),
        ("&model_version=m2", ["--model-version", "m2"]),
        ("&tz=UTC", ["--tz", "UTC"]),
    ],
)
@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_counts_equal_the_command_line(
    client: TestClient, config: Path, query: str, cli_args: list[str], fmt: str
) -> None:
    got = client.get(f"/counts?camera=km39&format={fmt}{query}")
    assert got.status_code == 200, got.text
    args = ["counts", "--camera", "km39", "--config", str(config), "--format", fmt, *cli_args]
    printed = runner.invoke(cli, args)
    assert printed.exit_code == 0, printed.output
    assert got.text == printed.stdout.rstrip("\n")
    expected_type = "application/json" if fmt == "json" else "text/csv"
    assert got.headers["content-type"].startswith(expected_type)


def test_uncovered_buckets_are_null_and_quiet_covered_ones_zero(client: TestClient) -> None:
    rows = client.get("/counts?camera=km39&granularity=hour").json()
    north = {r["start"][11:16]: r["count"] for r in rows if r["direction_name"] == "north"}
    south = {r["start"][11:16]: r["count"] for r in rows if r["direction_name"] == "south"}
    assert north["10:00"] == 2 and north["11:00"] == 0 and north["12:00"] is None
    assert south["10:00"] == 0 and south["09:00"] is None
    text = client.get("/counts?camera=km39&granularity=hour&format=csv").text
    cells = list(csv.DictReader(io.StringIO(text)))
    assert {c["count"] for c in cells if c["start"].startswith("2024-05-01T12")} == {""}


@pytest.mark.parametrize(
    ("query", "status", "says"),
    [
        ("", 422, "camera"),
        ("camera=nope", 404, "unknown camera 'nope'"),
        ("camera=km39&granularity=week", 422, "granularity"),
        ("camera=km39&from=2024-13-01", 422, "from"),
        ("camera=km39&from=2024-05-02&to=2024-05-01", 422, "before start"),
        ("camera=km39&as_of=yesterday", 422, "as_of 'yesterday' is not ISO 8601"),
        ("camera=km39&as_of=2024-05-01T00:00:00", 422, "needs a UTC offset"),
        ("camera=km39&class=tractor", 422, "unknown class 'tractor'"),
        ("camera=km39&tz=Mars/Olympus", 422, "Mars/Olympus"),
        ("camera=km39&format=xml", 422, "format"),
        ("camera=km39&from=2023-05-01&to=2024-05-01&granularity=hour", 422, "367 days"),
        ("camera=km39&from=1800-01-01&to=2024-05-01", 422, "day 1800-01-01"),
        ("camera=km39&from=9999-12-31&to=9999-12-31&tz=Pacific/Kiritimati", 422, "9999-12-31"),
        ("camera=km39&line=gaet", 422, "has no line 'gaet'"),
        ("camera=km39&direction=sideways", 422, "has no direction 'sideways'"),
    ],
)
def test_bad_parameters_get_a_clear_4xx(
    client: TestClient, query: str, status: int, says: str
) -> None:
    got = client.get(f"/counts?{query}")
    assert got.status_code == status
    assert says in json.dumps(got.json()["detail"])


def test_cameras_report_runs_last_frame_and_fps(client: TestClient) -> None:
    cams = client.get("/cameras").json()["cameras"]
    assert [c["camera_id"] for c in cams] == ["km39"]
    km39 = cams[0]
    assert km39["state"] == "recordings" and km39["runs"] == 1
    assert km39["last_run_status"] == "complete" and km39["timezone"] == "Asia/Jakarta"
    assert km39["last_frame_at"] == (T0 + timedelta(hours=2)).isoformat()
    assert km39["fps"] == pytest.approx(5.0)
    assert km39["reconnects"] is None, "no live runtime: unknown, not 0"
    assert km39["coverage_today_s"] == 0.0


def test_status_command_prints_what_cameras_serves(client: TestClient, config: Path) -> None:
    table = runner.invoke(cli, ["status", "--config", str(config)])
    assert table.exit_code == 0, table.output
    head, row = table.stdout.splitlines()[:2]
    assert head.split()[:2] == ["camera", "state"] and row.split()[:2] == ["km39", "recordings"]
    printed = runner.invoke(cli, ["status", "--config", str(config), "--json"])
    served = client.get("/cameras").json()
    assert json.loads(printed.stdout)["cameras"][0]["runs"] == served["cameras"][0]["runs"]


def test_status_names_a_missing_database(tmp_path: Path) -> None:
    got = runner.invoke(cli, ["status", "--db", f"sqlite:///{tmp_path}/none.db"])
    assert got.exit_code == 1 and "database not found" in got.output


def test_health_and_metrics(client: TestClient) -> None:
    assert client.get("/health").json()["status"] == "ok"
    metrics.CROSSINGS.labels("km39", "gate", "truck", "north").inc()
    text = client.get("/metrics").text
    for name in (
        "truckcount_frames_read_total",
        "truckcount_frames_analysed_total",
        "truckcount_frames_dropped_total",
        "truckcount_detector_batch_size",
        "truckcount_detector_latency_seconds",
        "truckcount_reconnects_total",
        "truckcount_job_runs_total",
        "truckcount_job_failures_total",
    ):
        assert f"# TYPE {name}" in text
    assert 'truckcount_crossings_total{camera="km39",class_name="truck"' in text


def test_openapi_schema_lists_the_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/counts", "/cameras", "/health", "/metrics"} <= set(paths)
    params = {p["name"] for p in paths["/counts"]["get"]["parameters"]}
    assert {"camera", "class", "granularity", "from", "to", "as_of", "format"} <= params


@pytest.mark.parametrize(
    ("path", "header", "status"),
    [
        ("/counts?camera=km39", None, 401),
        ("/counts?camera=km39", "Bearer wrong", 401),
        ("/counts?camera=km39", f"Bearer {TOKEN}", 200),
        ("/cameras", None, 401),
        ("/cameras", f"Bearer {TOKEN}", 200),
        ("/metrics", None, 401),
        ("/openapi.json", None, 401),
        ("/health", None, 200),
        ("/dashboard/", None, 200),
        ("/dashboard/app.js", None, 200),
    ],
)
def test_bearer_token_guards_all_but_health_and_the_page(
    config: Path, path: str, header: str | None, status: int
) -> None:
    client = _client(config, token=TOKEN)
    headers = {"Authorization": header} if header else {}
    got = client.get(path, headers=headers)
    assert got.status_code == status
    if status == 401:
        assert got.headers["www-authenticate"] == "Bearer"


def test_the_token_is_never_logged(config: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = load_config(config)
    settings = ApiSettings(cfg.storage.url, cfg, TOKEN)
    client = TestClient(create_app(settings))
    client.get("/counts?camera=km39", headers={"Authorization": f"Bearer {TOKEN}"})
    client.get("/counts?camera=km39", headers={"Authorization": "Bearer nope"})
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(settings)


@pytest.mark.parametrize(
    ("host", "token", "allowed"),
    [
        ("127.0.0.1", None, True),
        ("localhost", None, True),
        ("::1", None, True),
        ("0.0.0.0", None, False),
        ("192.0.2.10", None, False),
        ("0.0.0.0", TOKEN, True),
    ],
)
def test_a_non_loopback_address_needs_a_token(host: str, token: str | None, allowed: bool) -> None:
    if allowed:
        check_binding(host, token, "TRUCKCOUNT_API_TOKEN")
    else:
        with pytest.raises(ConfigError, match="TRUCKCOUNT_API_TOKEN"):
            check_binding(host, token, "TRUCKCOUNT_API_TOKEN")


def test_serve_refuses_to_start_unprotected(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRUCKCOUNT_API_TOKEN", raising=False)
    got = runner.invoke(cli, ["serve", "--config", str(config), "--host", "0.0.0.0"])
    assert got.exit_code == 1
    assert "error: refusing to serve on 0.0.0.0 without a token" in got.output


def test_serve_refuses_a_watch_folder_that_is_a_file(config: Path) -> None:
    blocker = config.parent / "inbox"
    blocker.write_text("a file, not a folder")
    with_watch = config.read_text() + "service: {watch_folder: inbox}\n"
    config.write_text(with_watch)
    got = runner.invoke(cli, ["serve", "--config", str(config)])
    assert got.exit_code == 1
    assert f"error: service.watch_folder {blocker} is a file, not a folder" in got.output


def test_a_broken_database_answers_503_not_500(config: Path) -> None:
    client = _client(config)
    client.app.state.engine.dispose()  # type: ignore[attr-defined]
    db = config.parent / "counts.db"
    for leftover in config.parent.glob("counts.db-*"):
        leftover.unlink()
    db.write_bytes(b"this is not an SQLite database " * 200)
    assert client.get("/health").json() == {"status": "unavailable", "database": "unreachable"}
    for path in ("/health", "/counts?camera=km39", "/cameras"):
        assert client.get(path).status_code == 503, path
