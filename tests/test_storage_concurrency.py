"""Several processes on one database at once, as the machines of a backfill are: registering
the same camera and migrating a fresh database must not fail any of them."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid

import pytest
from sqlalchemy import Engine, func, select

from truckcount.storage import ensure_camera
from truckcount.storage.models import CameraRow


def test_many_writers_register_one_camera_at_once(engine: Engine) -> None:
    writers, errors = 8, []
    start = threading.Barrier(writers)

    def register() -> None:
        start.wait()
        try:
            ensure_camera(engine, "gate-7", "Asia/Jakarta")
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=register) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    with engine.connect() as conn:
        rows = conn.scalar(select(func.count()).where(CameraRow.id == "gate-7"))
    assert rows == 1


@pytest.mark.slow
def test_processes_migrating_a_fresh_postgresql_database_at_once_all_succeed(
    pg_engine: Engine,
) -> None:
    name = f"fresh_{uuid.uuid4().hex[:8]}"
    admin = pg_engine.execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = pg_engine.url.set(database=name).render_as_string(hide_password=False)
    # each process imports first, then all open the database at the same instant
    code = (
        "import sys, time; from truckcount.storage import open_database; "
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time())); open_database(sys.argv[1])"
    )
    at = str(time.time() + 5)
    try:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code, url, at], stderr=subprocess.PIPE, text=True
            )
            for _ in range(4)
        ]
        results = [(p.wait(120), p.stderr.read() if p.stderr else "") for p in procs]
        assert [status for status, _ in results] == [0] * len(procs), results
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
