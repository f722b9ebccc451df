"""Storage errors name what is wrong (an unknown camera, a missing file) and never show a
database password."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from truckcount.storage import (
    StorageError,
    UnknownCameraError,
    begin_run,
    count_crossings,
    daily_counts,
    list_runs,
    mask_url,
    open_database,
)
from truckcount.types import RunInfo

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def test_unknown_camera_names_it_and_the_known_ones(engine: Engine) -> None:
    with pytest.raises(
        UnknownCameraError, match=r"unknown camera 'nope' \(known cameras: 'cam1'\)"
    ):
        daily_counts(engine, "nope")
    with pytest.raises(UnknownCameraError, match="'nope'"):
        begin_run(engine, RunInfo("r", "nope", "a.mp4", "m1", "cfg", T0))
    with pytest.raises(UnknownCameraError):
        count_crossings(engine, "nope")
    with pytest.raises(UnknownCameraError):
        list_runs(engine, "nope")


def test_missing_sqlite_file_without_create_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "counts.db"
    with pytest.raises(StorageError, match=f"database not found: {path}"):
        open_database(f"sqlite:///{path}", create=False)
    assert not path.parent.exists()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://user:secret@db.local:5432/counts", "user:***@db.local:5432"),
        ("postgresql://user:s3cr%40t@db.local/counts", "user:***@db.local/counts"),
        ("not a url ://user:secret@host/db", "user:***@host/db"),
        ("sqlite:///counts.db", "sqlite:///counts.db"),
        (
            "postgresql+psycopg://user@db/counts?sslmode=require&password=secret",
            "counts?password=***&sslmode=require",
        ),
        ("postgresql+psycopg://user@db/counts?sslpassword=secret", "sslpassword=***"),
    ],
)
def test_mask_url_hides_the_password(url: str, shown: str) -> None:
    masked = mask_url(url)
    assert "secret" not in masked and "s3cr" not in masked
    assert shown in masked


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://user:secret@127.0.0.1:1/db",  # unreachable, or driver missing
        "nosuchdialect://user:secret@127.0.0.1:1/db",
        "postgresql://user:secret@host:notaport/db",
    ],
)
def test_open_errors_never_show_the_password(url: str) -> None:
    with pytest.raises(StorageError) as caught:
        open_database(url)
    assert "secret" not in str(caught.value)
    assert "user:***@" in str(caught.value) or "invalid database URL" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.skipif(
    importlib.util.find_spec("psycopg") is None, reason="needs the psycopg driver installed"
)
def test_unreachable_postgresql_is_a_storage_error() -> None:
    with pytest.raises(StorageError, match=r"cannot open database .*user:\*\*\*@127\.0\.0\.1:1"):
        open_database("postgresql+psycopg://user:secret@127.0.0.1:1/db")
