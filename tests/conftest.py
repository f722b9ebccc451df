"""Shared fixtures: a migrated storage engine on SQLite and on a throwaway PostgreSQL server.

The ``engine`` fixture is parametrised over both backends and registers camera ``cam1`` (UTC).
PostgreSQL tests skip when no server can be started, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tests import pg
from truckcount.storage import ensure_camera, open_database

CAMERA = "cam1"
TABLES = ("coverage", "crossings", "runs", "cameras")


@pytest.fixture(scope="session", autouse=True)
def own_data_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Spool and cache folders of the session's own (child processes too): the suite never
    replays a user's spooled writes into a test database, nor leaves files in the user's home."""
    saved = {k: os.environ.get(k) for k in ("XDG_DATA_HOME", "XDG_CACHE_HOME")}
    for key in saved:
        os.environ[key] = str(tmp_path_factory.mktemp(key.lower()))
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite database at the newest revision; migrating once keeps the suite fast."""
    path = tmp_path_factory.mktemp("template") / "counts.db"
    open_database(f"sqlite:///{path}").dispose()  # closing checkpoints the WAL into the file
    return path


@pytest.fixture(scope="session")
def pg_engine() -> Iterator[Engine]:
    """An engine on a fresh PostgreSQL server, migrated once for the whole session."""
    try:
        if importlib.util.find_spec("psycopg") is None:
            raise pg.PostgresUnavailable("the psycopg driver is not installed")
        with pg.server() as url:
            engine = open_database(url)
            yield engine
            engine.dispose()
    except pg.PostgresUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI=true: {exc}")
        pytest.skip(f"no PostgreSQL server: {exc}")


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path, migrated_db: Path) -> Iterator[Engine]:
    """An empty migrated database holding camera ``cam1`` (UTC), on each backend."""
    if request.param == "postgresql":
        eng: Engine = request.getfixturevalue("pg_engine")
        ensure_camera(eng, CAMERA, "UTC")
        yield eng
        with eng.begin() as conn:
            conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        return
    path = tmp_path / "counts.db"
    shutil.copyfile(migrated_db, path)
    eng = open_database(f"sqlite:///{path}", create=False)
    ensure_camera(eng, CAMERA, "UTC")
    yield eng
    eng.dispose()
