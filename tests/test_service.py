"""Service parts: recording names, rollup periods and checks, the job store, children, jobs."""

from __future__ import annotations

import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine

from tests.test_detector_train import make_dataset
from truckcount import service_jobs, service_store
from truckcount.config import CameraConfig, load_config
from truckcount.service import JobSpec, build_scheduler, job_specs
from truckcount.service_jobs import previous_period, verify_period
from truckcount.service_watch import FolderWatcher, match_recording, run_child
from truckcount.storage import (
    add_coverage,
    add_crossings,
    begin_run,
    ensure_camera,
    finish_run,
    open_database,
)
from truckcount.types import BucketWidth, Crossing, Direction, RunInfo, VehicleClass

CAMERAS = [
    CameraConfig(id="km39", timezone="Asia/Jakarta"),
    CameraConfig(id="cam", timezone="Europe/Berlin"),
    CameraConfig(id="cam_1", timezone="UTC"),
    CameraConfig(id="own", timezone="Asia/Jakarta", filename_pattern="gate-%Y-%m-%dT%H.%M.%S.mkv"),
]
PATTERN = "{camera}_%Y%m%d_%H%M%S.mp4"
T0 = datetime(2024, 5, 1, 3, 0, tzinfo=UTC)  # 10:00 in Jakarta


@pytest.mark.parametrize(
    ("name", "camera", "start"),
    [
        ("km39_20211115_131709.mp4", "km39", "2021-11-15T13:17:09+07:00"),
        ("cam_20240331_013000.mp4", "cam", "2024-03-31T01:30:00+01:00"),  # before the DST jump
        ("cam_20240331_033000.mp4", "cam", "2024-03-31T03:30:00+02:00"),  # after it
        ("cam_1_20240101_000000.mp4", "cam_1", "2024-01-01T00:00:00+00:00"),  # id with _
        ("km39_20211315_131709.mp4", None, None),  # month 13
        ("km39_20211115.mp4", None, None),
        ("km39_20211115_131709.mkv", None, None),
        ("other_20211115_131709.mp4", None, None),  # not a configured camera
        ("notes.txt", None, None),
        ("gate-2024-06-01T12.00.00.mkv", "own", "2024-06-01T12:00:00+07:00"),  # own pattern
        ("own_20240601_120000.mp4", None, None),  # the service pattern is not its pattern
    ],
)
def test_recording_names(name: str, camera: str | None, start: str | None) -> None:
    matched = match_recording(name, CAMERAS, PATTERN)
    if camera is None:
        assert matched is None
    else:
        assert matched is not None and start is not None
        assert matched == (camera, datetime.fromisoformat(start))


@pytest.mark.parametrize(
    ("now", "zone", "width", "expected"),
    [
        ("2024-05-01T10:30:00+07:00", "Asia/Jakarta", "hourly", "2024-05-01T09:00:00+07:00"),
        ("2024-05-01T00:10:00+07:00", "Asia/Jakarta", "hourly", "2024-04-30T23:00:00+07:00"),
        ("2024-05-01T00:10:00+07:00", "Asia/Jakarta", "daily", "2024-04-30T00:00:00+07:00"),
        ("2024-05-01T00:10:00+00:00", "Asia/Jakarta", "daily", "2024-04-30T00:00:00+07:00"),
        # Spring forward in Berlin: 02:00 CET becomes 03:00 CEST; the hour before 03:30 CEST
        # is the one that began at 01:00 CET.
        ("2024-03-31T03:30:00+02:00", "Europe/Berlin", "hourly", "2024-03-31T01:00:00+01:00"),
        ("2024-10-27T02:30:00+01:00", "Europe/Berlin", "hourly", "2024-10-27T02:00:00+02:00"),
    ],
)
def test_previous_period(now: str, zone: str, width: str, expected: str) -> None:
    got = previous_period(datetime.fromisoformat(now), zone, BucketWidth(width))
    want = datetime.fromisoformat(expected)
    # In UTC: Python never calls a DST-ambiguous local time equal to a time in another zone.
    assert got.astimezone(UTC) == want.astimezone(UTC) and got.utcoffset() == want.utcoffset()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """km39 (Jakarta) analysed 10:00-12:00 local on 1 May 2024, two trucks at 10:01 and 10:02."""
    path = tmp_path / "cfg.yaml"
    path.write_text(
        "storage: {url: 'sqlite:///counts.db'}\n"
        "cameras:\n  - {id: km39, timezone: Asia/Jakarta, lines: [{id: gate}]}\n"
        "service: {watch_folder: inbox, settle_s: 0}\n"
    )
    engine = open_database(load_config(path).storage.url)
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
                "in",
                T0 + timedelta(minutes=i),
                0.9,
                "m1",
                "r1",
            )
            for i in (1, 2)
        ],
    )
    end = T0 + timedelta(hours=2)
    add_coverage(engine, "r1", T0, end, frames_analysed=36000)
    finish_run(
        engine, "r1", status="complete", frames_analysed=36000, media_start=T0, media_end=end
    )
    engine.dispose()
    return path


@pytest.mark.parametrize(
    ("now", "width", "period", "count", "covered_s"),
    [
        ("2024-05-01T11:30:00+07:00", "hourly", "2024-05-01T10:00:00+07:00", 2, 3600.0),
        ("2024-05-01T12:30:00+07:00", "hourly", "2024-05-01T11:00:00+07:00", 0, 3600.0),
        ("2024-05-01T10:30:00+07:00", "hourly", "2024-05-01T09:00:00+07:00", None, 0.0),
        ("2024-05-02T01:00:00+07:00", "daily", "2024-05-01T00:00:00+07:00", 2, 7200.0),
        ("2024-05-03T01:00:00+07:00", "daily", "2024-05-02T00:00:00+07:00", None, 0.0),
    ],
)
def test_rollup_verifies_and_reports_the_period(
    config: Path, now: str, width: str, period: str, count: int | None, covered_s: float
) -> None:
    cfg = load_config(config)
    engine = open_database(cfg.storage.url)
    report = verify_period(cfg, engine, BucketWidth(width), datetime.fromisoformat(now))
    assert report == {
        "km39": {"period": period, "series": 2, "covered_s": covered_s, "count": count}
    }
    engine.dispose()


def touch(path: str) -> None:
    """A job target for the job store tests: one line per execution."""
    with open(path, "a") as fh:
        fh.write("run\n")


def _spec(out: Path, hours: float = 1) -> JobSpec:
    return JobSpec(
        "tick", "tests.test_service:touch", IntervalTrigger(hours=hours), {"path": str(out)}
    )


def _wait_for(check: object, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return open_database(f"sqlite:///{tmp_path}/jobs.db")


@pytest.mark.slow
def test_a_run_missed_during_downtime_fires_once_after_restart(
    engine: Engine, tmp_path: Path
) -> None:
    """A job due while the service was down runs once at the next start, not three times.

    Regression: APScheduler 3 processed due jobs once more inside ``shutdown()``; submitting
    failed, yet the next run time was advanced and stored, so the missed run was silently lost.
    Here the job becomes due just before a shutdown, like a run missed at that moment.
    """
    out = tmp_path / "runs.txt"
    first = build_scheduler(engine, [_spec(out)])
    three_missed = datetime.now(UTC) - timedelta(hours=3, minutes=1)
    first.modify_job("tick", next_run_time=three_missed)  # as if down for three periods
    first.shutdown()
    assert not out.exists()

    again = build_scheduler(engine, [_spec(out)])
    assert again.get_job("tick").next_run_time == three_missed, "an unchanged job is kept"
    again.resume()
    _wait_for(out.exists)
    time.sleep(1.5)
    again.shutdown()
    assert out.read_text().count("run") == 1, "three missed runs coalesce into one"
    reloaded = build_scheduler(engine, [_spec(out)])
    assert reloaded.get_job("tick").next_run_time > datetime.now(UTC)
    reloaded.shutdown()


def test_changed_jobs_are_replaced_and_unconfigured_ones_removed(
    engine: Engine, tmp_path: Path
) -> None:
    out = tmp_path / "runs.txt"
    build_scheduler(engine, [_spec(out), JobSpec("old", "tests.test_service:touch",
                    IntervalTrigger(hours=5), {"path": str(out)})]).shutdown()  # fmt: skip
    scheduler = build_scheduler(engine, [_spec(out, hours=2)])
    assert [j.id for j in scheduler.get_jobs()] == ["tick"]
    assert str(scheduler.get_job("tick").trigger) == "interval[2:00:00]"
    scheduler.shutdown()


def test_job_specs_follow_the_config(config: Path, tmp_path: Path) -> None:
    cfg = load_config(config)
    assert [s.id for s in job_specs(cfg, config)] == [
        "rollup-hourly",
        "rollup-daily",
        "watch-folder",
    ]
    bare = cfg.model_copy(update={"service": cfg.service.model_copy(update={"watch_folder": None})})
    assert [s.id for s in job_specs(bare, config)] == ["rollup-hourly", "rollup-daily"]


def test_a_stopped_child_is_interrupted_quickly() -> None:
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    code = run_child([sys.executable, "-c", "import time; time.sleep(60)"], stop)
    assert code is None and time.monotonic() - started < 5


def test_a_child_ignoring_sigint_is_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("truckcount.service_watch.CHILD_STOP_S", 0.5)
    stop = threading.Event()
    stop.set()
    stubborn = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(60)"
    started = time.monotonic()
    assert run_child([sys.executable, "-c", stubborn], stop) is None
    assert time.monotonic() - started < 5


@pytest.mark.slow
def test_a_corrupt_recording_fails_once_and_is_retried_only_when_it_changes(
    config: Path, tmp_path: Path
) -> None:
    """A broken file must not be reprocessed on every scan, but a replaced one must be."""
    cfg = load_config(config)
    engine = open_database(cfg.storage.url)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    bad = inbox / "km39_20240501_120000.mp4"
    bad.write_bytes(b"not a video")
    watcher = FolderWatcher(config, inbox, threading.Event())
    assert watcher.scan(engine, cfg) == {"failed": [bad.name]}
    assert watcher.scan(engine, cfg) == {}, "not retried while unchanged"
    bad.write_bytes(b"still not a video, but new")
    assert watcher.scan(engine, cfg) == {"failed": [bad.name]}
    engine.dispose()


def test_a_failing_job_is_recorded_and_counted(config: Path) -> None:
    """The watch folder of the config does not exist: the job fails, the scheduler does not."""
    service_jobs.watch_folder(str(config))
    engine = service_jobs.engine_for(load_config(config).storage.url)
    (job,) = service_store.recent_jobs(engine, "watch-folder")
    assert job.status == "failed" and "does not exist" in job.detail["error"]
    service_jobs.close_engines()


@pytest.mark.slow
def test_nightly_evaluation_stores_the_figures(config: Path, tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "labelled", n_train=2, n_val=4)
    text = config.read_text().replace("settle_s: 0", f"settle_s: 0, eval_data: {data}")
    config.write_text(text)
    service_jobs.nightly_eval(str(config))
    engine = service_jobs.engine_for(load_config(config).storage.url)
    (job,) = service_store.recent_jobs(engine, "nightly-eval")
    assert job.status == "ok", job.detail
    (evaluation,) = service_store.evaluations(engine)
    assert evaluation.model_version.startswith("truckcount-")
    assert evaluation.split == "val" and "all" in evaluation.figures
    service_jobs.close_engines()
