"""``truckcount backfill``: every recording of a folder counted once, resumable, and split between
machines by ``--shard K/N`` so that together they count what one machine counts."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from zoneinfo import ZoneInfo

import av
import numpy as np
import pytest
from sqlalchemy import Engine, select, text
from typer.testing import CliRunner

from tests.conftest import TABLES
from tests.helpers import load_benchmark
from truckcount.backfill import Shard
from truckcount.cli import app
from truckcount.storage import RunStatus, list_runs, open_database
from truckcount.storage.models import CrossingRow

REPO = Path(__file__).resolve().parent.parent
DEMO_CLIP = REPO / "demo" / "km39-siang.mp4"
JAKARTA = ZoneInfo("Asia/Jakarta")
NAMES = [f"km39_20240601_12{m:02d}00.mp4" for m in range(3)]


def grey_clip(path: Path, frames: int = 10) -> Path:
    """``frames`` grey 64x48 frames at 5 fps."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 90 + i, np.uint8), "bgr24")
            frame.pts, frame.time_base = i, Fraction(1, 5)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def write_config(folder: Path, url: str) -> Path:
    path = folder / "cfg.yaml"
    path.write_text(
        f"storage: {{url: '{url}'}}\n"
        "cameras:\n  - {id: km39, timezone: Asia/Jakarta, lines: [{id: y60, a: [0, 0.6], "
        "b: [1, 0.6], directions: {in: toward_camera, out: away_from_camera}}]}\n"
    )
    return path


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    """Three recordings named by camera and start, a corrupt one, and a file of notes."""
    folder = tmp_path / "inbox"
    folder.mkdir()
    for name in NAMES:
        grey_clip(folder / name)
    (folder / "km39_20240601_130000.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video")
    (folder / "notes.txt").write_text("camera moved on 2024-06-02\n")
    return folder


def backfill(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["backfill", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("text_", ["0/3", "4/3", "1/0", "a/b", "2", "-1/2"])
def test_a_bad_shard_is_refused_by_name(text_: str) -> None:
    with pytest.raises(ValueError, match=rf"--shard '{text_}'"):
        Shard.parse(text_)


def test_shards_partition_the_file_names() -> None:
    names = [f"cam_{i:05d}.mp4" for i in range(200)]
    shards = [Shard.parse(f"{k}/4") for k in range(1, 5)]
    owners = [[s for s in shards if s.holds(n)] for n in names]
    assert all(len(o) == 1 for o in owners), "each file in exactly one share"
    sizes = Counter(o[0].index for o in owners)
    assert min(sizes.values()) > 30, f"shares are about equal: {sizes}"


@pytest.mark.slow
def test_each_recording_is_counted_once_and_a_bad_one_is_named(inbox: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path}/counts.db")
    status, out, err = backfill(str(inbox), "--config", str(cfg))
    assert status == 1, "a recording failed"
    assert "3 counted, 0 already counted, 1 failed, 0 in other shards, 1 not recordings" in out
    assert "failed: km39_20240601_130000.mp4: " in err
    engine = open_database(f"sqlite:///{tmp_path}/counts.db")
    runs = [r for r in list_runs(engine) if r.status is RunStatus.COMPLETE]
    starts = sorted(r.media_start for r in runs if r.media_start is not None)
    assert starts == [datetime(2024, 6, 1, 12, m, tzinfo=JAKARTA) for m in range(3)]

    status, out, _ = backfill(str(inbox), "--config", str(cfg))
    assert status == 1 and "0 counted, 3 already counted, 1 failed" in out
    assert len(list_runs(engine)) == len(runs), "nothing counted twice; a bad file makes no run"
    (inbox / "km39_20240601_130000.mp4").unlink()
    status, out, _ = backfill(*(str(inbox / n) for n in NAMES), "--config", str(cfg))
    assert status == 0 and "0 counted, 3 already counted, 0 failed" in out
    engine.dispose()


@pytest.mark.slow
def test_a_new_model_counts_every_recording_again_as_a_new_vintage(
    inbox: Path, tmp_path: Path
) -> None:
    (inbox / "km39_20240601_130000.mp4").unlink()
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path}/counts.db")
    assert "3 counted" in backfill(str(inbox), "--config", str(cfg))[1]
    other = tmp_path / "other.yaml"  # no crop classifier: another model version
    other.write_text(cfg.read_text() + "detector: {classifier: null}\n")
    assert "3 counted, 0 already counted" in backfill(str(inbox), "--config", str(other))[1]
    assert "0 counted, 3 already counted" in backfill(str(inbox), "--config", str(other))[1]
    engine = open_database(f"sqlite:///{tmp_path}/counts.db")
    versions = Counter(r.model_version for r in list_runs(engine))
    engine.dispose()
    assert sorted(versions.values()) == [3, 3]


@pytest.mark.slow
def test_shards_together_count_every_file_once(inbox: Path, tmp_path: Path) -> None:
    (inbox / "km39_20240601_130000.mp4").unlink()
    for name in (f"km39_20240601_1203{s:02d}.mp4" for s in range(0, 60, 10)):
        grey_clip(inbox / name, frames=5)
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path}/counts.db")
    counted = 0
    for k in (1, 2, 3):
        status, out, _ = backfill(str(inbox), "--config", str(cfg), "--shard", f"{k}/3")
        assert status == 0, out
        counted += int(out.split(": ")[1].split(" counted")[0])
    engine = open_database(f"sqlite:///{tmp_path}/counts.db")
    sources = [r.source for r in list_runs(engine)]
    engine.dispose()
    assert counted == len(sources) == len(set(sources)) == 9


def test_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path}/counts.db")
    status, _, err = backfill(str(tmp_path / "absent"), "--config", str(cfg))
    assert status == 1 and f"{tmp_path / 'absent'}: no such file or folder" in err


def bench_backfill() -> ModuleType:
    """``benchmarks/bench_backfill.py``, which cuts the demo clip into named recordings."""
    return load_benchmark("bench_backfill")


@pytest.mark.slow
@pytest.mark.skipif(not DEMO_CLIP.exists(), reason="demo clip not built")
def test_two_machines_on_one_postgresql_count_what_one_machine_counts(
    tmp_path: Path, pg_engine: Engine
) -> None:
    """Two backfill processes run at once, shards 1/2 and 2/2, into one PostgreSQL database;
    one process alone counts the same recordings into SQLite. Each file is counted once, and
    the crossings per file, line, direction and class are the same."""
    parts = bench_backfill().demo_parts(tmp_path / "recordings")
    url = pg_engine.url.render_as_string(hide_password=False)
    cluster = write_config(tmp_path, url)
    alone = write_config(tmp_path / "recordings", f"sqlite:///{tmp_path}/alone.db")
    argv = [sys.executable, "-m", "truckcount.cli", "-q", "backfill", str(parts[0].parent)]
    try:
        procs = [
            subprocess.Popen(
                [*argv, "-c", str(cluster), "--shard", f"{k}/2"],
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for k in (1, 2)
        ]
        outs = [p.communicate(timeout=600) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        single = subprocess.run([*argv, "-c", str(alone)], capture_output=True, text=True)
        assert single.returncode == 0, single.stderr
        alone_db = open_database(f"sqlite:///{tmp_path}/alone.db")
        assert per_file(pg_engine) == per_file(alone_db)
        assert len(per_file(pg_engine)) == len(parts)
        alone_db.dispose()
    finally:
        with pg_engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))


def per_file(engine: Engine) -> dict[str, Counter[tuple[str, str, str]]]:
    """Crossings of complete runs per recording (file name), line, direction and class; a file
    with two complete runs would show twice as many."""
    runs = {
        r.attempt_id: Path(r.source).name
        for r in list_runs(engine)
        if r.status is RunStatus.COMPLETE
    }
    found: dict[str, Counter[tuple[str, str, str]]] = {name: Counter() for name in runs.values()}
    with engine.connect() as conn:
        for row in conn.execute(select(CrossingRow)):
            if row.attempt_id in runs:
                found[runs[row.attempt_id]][(row.line_id, row.direction_name, row.class_name)] += 1
    assert len(runs) == len(found), "one complete run per recording"
    return found
