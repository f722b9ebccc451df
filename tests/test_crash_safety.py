"""A run killed with SIGKILL half-way leaves no trace in the counts, and its rerun counts once;
a rerun killed half-way leaves the earlier results in place.

Run as a module (``python -m tests.test_crash_safety URL RUN_ID``) this file is the writer the
test kills: it begins the run and commits crossings batch by batch, printing ``batch N`` after
each commit, and after ``KILL_AFTER`` batches waits for its standard input (which the test never
writes), so the kill always lands after exactly that many commits, however loaded the machine.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from truckcount.storage import (
    add_coverage,
    add_crossings,
    begin_run,
    bucket_counts,
    count_crossings,
    daily_counts,
    ensure_camera,
    finish_run,
    list_runs,
    open_database,
)
from truckcount.types import Crossing, Direction, RunInfo, VehicleClass

pytestmark = pytest.mark.slow  # kills writer processes on both backends

ROOT = Path(__file__).resolve().parents[1]
START = datetime(2025, 3, 1, 22, 0, tzinfo=UTC)  # four hours spanning two UTC days
BATCHES = 8
PER_BATCH = 50
STEP = timedelta(seconds=4 * 3600 / (BATCHES * PER_BATCH))
KILL_AFTER = 3
DAYS = (date(2025, 3, 1), date(2025, 3, 2))


def _batch(camera_id: str, run_id: str, n: int) -> list[Crossing]:
    first = n * PER_BATCH
    return [
        Crossing(
            camera_id,
            "line1",
            i,
            VehicleClass.TRUCK,
            Direction.IN if i % 3 else Direction.OUT,
            "north" if i % 3 else "south",
            START + i * STEP,
            0.9,
            "m1",
            run_id,
        )
        for i in range(first, first + PER_BATCH)
    ]


def write_run(
    engine: Engine,
    camera_id: str,
    run_id: str,
    *,
    finish: bool,
    hold_after: int | None = None,
) -> None:
    """Begin ``run_id``, commit every batch, and when ``finish`` add coverage and complete it.

    With ``hold_after`` the writer blocks on standard input after that many batches."""
    ensure_camera(engine, camera_id, "UTC")
    begin_run(engine, RunInfo(run_id, camera_id, "clip.mp4", "m1", "0" * 16, datetime.now(UTC)))
    for n in range(BATCHES):
        add_crossings(engine, _batch(camera_id, run_id, n))
        print(f"batch {n + 1}", flush=True)
        if n + 1 == hold_after:
            sys.stdin.readline()
    if finish:
        end = START + timedelta(hours=4)
        add_coverage(engine, run_id, START, end, 3600)
        finish_run(
            engine,
            run_id,
            status="complete",
            frames_analysed=3600,
            media_start=START,
            media_end=end,
        )


def _series(engine: Engine, camera_id: str) -> list[tuple[object, ...]]:
    """Daily buckets without the camera id, so two cameras' results compare equal."""
    found = bucket_counts(engine, camera_id, width="daily", start=DAYS[0], end=DAYS[1])
    return [(b.line_id, b.direction_name, b.start, b.count, b.covered_s) for b in found]


def _daily(engine: Engine, camera_id: str) -> list[tuple[str, str, str, int]]:
    return [(d.line_id, d.day, d.direction_name, d.count) for d in daily_counts(engine, camera_id)]


def _kill_mid_run(url: str, run_id: str, while_running: Callable[[], None] = lambda: None) -> None:
    """Start the writer, wait until ``KILL_AFTER`` batches are committed, call
    ``while_running``, then SIGKILL the writer."""
    cmd = [sys.executable, "-m", "tests.test_crash_safety", url, run_id]
    child = subprocess.Popen(
        cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        for seen in range(1, KILL_AFTER + 1):
            line = child.stdout.readline()
            assert line.strip() == f"batch {seen}", f"writer stopped early: {line!r}"
        while_running()
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL


def test_killed_run_counts_nothing_and_rerun_matches_clean_run(engine: Engine) -> None:
    """A backfill worker was killed (OOM killer, ``docker kill``) while writing crossings.

    Each batch commits on its own, so the killed run left crossings behind, but its run stays
    ``running`` and only complete runs count: buckets read NULL (no coverage) and daily counts
    are empty. Processing the same recording again reuses the run id in a new attempt, which
    marks the killed one failed; the counts then equal those of a run that was never
    interrupted.
    """
    url = engine.url.render_as_string(hide_password=False)
    _kill_mid_run(url, "crash-run")

    assert count_crossings(engine, "cam1", include_unfinished=True) == KILL_AFTER * PER_BATCH
    assert count_crossings(engine, "cam1") == 0
    assert _daily(engine, "cam1") == []
    assert all(count is None for *_, count, _covered in _series(engine, "cam1"))

    write_run(engine, "cam1", "crash-run", finish=True)
    write_run(engine, "clean", "clean-run", finish=True)

    assert count_crossings(engine, "cam1") == BATCHES * PER_BATCH
    assert _series(engine, "cam1") == _series(engine, "clean")
    assert _daily(engine, "cam1") == _daily(engine, "clean")
    assert sum(n for *_, n in _daily(engine, "cam1")) == BATCHES * PER_BATCH


def test_rerun_killed_mid_way_leaves_the_old_counts(engine: Engine) -> None:
    """A complete run is processed again (same recording, model and config) and the rerun is
    killed half-way. Earlier versions deleted the old crossings when the rerun began, so the
    counts read NULL from then on; now readers see the old counts while the rerun writes and
    after it dies, and a later rerun that completes replaces them exactly once.
    """
    url = engine.url.render_as_string(hide_password=False)
    write_run(engine, "cam1", "r", finish=True)
    before_rerun = datetime.now(UTC)
    old = (_series(engine, "cam1"), _daily(engine, "cam1"))
    seen_while_running: list[object] = []

    def look() -> None:
        seen_while_running.append((_series(engine, "cam1"), _daily(engine, "cam1")))

    _kill_mid_run(url, "r", look)
    assert seen_while_running == [old]
    assert (_series(engine, "cam1"), _daily(engine, "cam1")) == old
    assert count_crossings(engine, "cam1") == BATCHES * PER_BATCH
    assert (
        count_crossings(engine, "cam1", include_unfinished=True)
        == (BATCHES + KILL_AFTER) * PER_BATCH
    )

    write_run(engine, "cam1", "r", finish=True)
    assert (_series(engine, "cam1"), _daily(engine, "cam1")) == old
    assert count_crossings(engine, "cam1") == BATCHES * PER_BATCH
    at = bucket_counts(engine, "cam1", start=DAYS[0], end=DAYS[1], as_of=before_rerun)
    assert [b.count for b in at] == [b[3] for b in old[0]], "as-of before: the first attempt"
    assert [r.status.value for r in list_runs(engine, "cam1")] == ["complete", "failed", "complete"]


if __name__ == "__main__":
    target, run = sys.argv[1], sys.argv[2]
    write_run(open_database(target, create=False), "cam1", run, finish=False, hold_after=KILL_AFTER)
