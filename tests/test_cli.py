"""The command line: subcommands exist, and bad input gives one line naming the problem, exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from truckcount.cli import app

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stderr if result.exit_code else result.stdout


def _one_error_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, text
    return lines[0]


def test_help_lists_every_subcommand() -> None:
    code, out = _run("--help")
    assert code == 0
    for cmd in ("run", "counts", "train", "eval", "validate-config", "export-weights"):
        assert cmd in out


def test_counts_on_a_missing_database(tmp_path: Path) -> None:
    code, err = _run("counts", "--camera", "km39", "--db", f"sqlite:///{tmp_path}/none.db")
    assert code == 1
    assert _one_error_line(err) == f"error: database not found: {tmp_path}/none.db"


def test_counts_for_an_unknown_camera(tmp_path: Path) -> None:
    from truckcount.storage import ensure_camera, open_database

    url = f"sqlite:///{tmp_path}/c.db"
    engine = open_database(url)
    ensure_camera(engine, "km39", "Asia/Jakarta")
    engine.dispose()
    code, err = _run("counts", "--camera", "nope", "--db", url)
    assert code == 1
    assert "unknown camera 'nope'" in _one_error_line(err) and "'km39'" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "missing.mp4"),
        (b"this is not a video at all", "corrupt.mp4"),
    ],
)
def test_run_on_a_bad_video(tmp_path: Path, content: bytes | None, message: str) -> None:
    name = "missing.mp4" if content is None else "corrupt.mp4"
    video = tmp_path / name
    if content is not None:
        video.write_bytes(content)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        f"storage: {{url: 'sqlite:///{tmp_path}/x.db'}}\n"
        "cameras: [{id: cam, start: '2024-01-01T00:00:00+00:00'}]\n"
    )
    code, err = _run("run", str(video), "--camera", "cam", "--config", str(cfg))
    assert code == 1
    assert message in _one_error_line(err)
    assert not (tmp_path / "x.db").exists(), "nothing is written for a bad input"


def test_run_without_a_start_time(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("cameras: [{id: cam}]\n")
    code, err = _run("run", "v.mp4", "--camera", "cam", "--config", str(cfg))
    assert code == 1 and "--start" in _one_error_line(err)


def test_run_with_a_naive_start(tmp_path: Path) -> None:
    code, err = _run("run", "v.mp4", "--camera", "cam", "--start", "2024-01-01T00:00:00")
    assert code == 1 and "needs a UTC offset" in _one_error_line(err)


def test_validate_config(tmp_path: Path) -> None:
    good = Path(__file__).resolve().parent.parent / "demo" / "km39.yaml"
    code, out = _run("validate-config", str(good))
    assert code == 0 and "km39 (Asia/Jakarta): lines y60" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras: [{id: cam, timezone: Nowhere/City}]\n")
    code, err = _run("validate-config", str(bad))
    assert code == 1 and "unknown IANA time zone 'Nowhere/City'" in _one_error_line(err)


def test_eval_on_a_folder_without_labels(tmp_path: Path) -> None:
    code, err = _run("eval", "detect", str(tmp_path))
    assert code == 1 and "expected 'images/' and 'labels/'" in _one_error_line(err)
