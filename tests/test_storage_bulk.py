"""The fast insert paths (COPY, lean executemany) store exactly what an ORM insert stores."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from sqlalchemy import Engine, insert, select, text

from truckcount.storage import (
    add_coverage,
    add_crossings,
    begin_run,
    bucket_counts,
    finish_run,
)
from truckcount.storage.bulk import sqlite_utc_text
from truckcount.storage.models import CrossingRow
from truckcount.types import Crossing, Direction, RunInfo, VehicleClass

CAM = "cam1"
T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
TIMES = [
    T0,  # whole second
    T0 + timedelta(microseconds=1),
    T0 + timedelta(seconds=59, microseconds=999_999),
    datetime(2024, 5, 1, 17, 30, 0, 500_000, tzinfo=ZoneInfo("Asia/Jakarta")),
    datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))),
]
LINES = ["gate", "tab\there", "back\\slash", "new\nline", "ünïcode"]


def crossings(run_id: str) -> list[Crossing]:
    return [
        Crossing(
            CAM,
            line,
            np.int64(i),  # type: ignore[arg-type]  # what the tracker hands over
            VehicleClass.BUS if i % 2 else VehicleClass.TRUCK,
            Direction.OUT if i % 2 else Direction.IN,
            f"dir {i}",
            ts,
            np.float32(0.1 * (i + 1)),  # type: ignore[arg-type]
            "m\t1",
            run_id,
        )
        for i, (line, ts) in enumerate(zip(LINES, TIMES, strict=True))
    ]


def _orm_values(c: Crossing, attempt_id: str) -> dict[str, object]:
    return {
        "attempt_id": attempt_id,
        "run_id": c.run_id,
        "camera_id": c.camera_id,
        "line_id": c.line_id,
        "track_id": int(c.track_id),
        "class_name": c.class_name.value,
        "direction": c.direction.value,
        "direction_name": c.direction_name,
        "ts": c.ts,
        "confidence": float(c.confidence),
        "model_version": c.model_version,
    }


def stored(engine: Engine, attempt_id: str) -> list[tuple[object, ...]]:
    """Raw rows of one attempt: on SQLite the stored text of ``ts`` itself."""
    ts = "ts" if engine.dialect.name == "postgresql" else "CAST(ts AS TEXT)"
    sql = (
        f"SELECT line_id, track_id, class_name, direction, direction_name, {ts}, confidence,"
        " model_version, run_id, camera_id FROM crossings WHERE attempt_id = :a ORDER BY track_id"
    )
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), {"a": attempt_id})]


def test_bulk_insert_stores_what_an_orm_insert_stores(engine: Engine) -> None:
    fast = begin_run(engine, RunInfo("fast", CAM, "a.mp4", "m1", "cfg", T0))
    slow = begin_run(engine, RunInfo("slow", CAM, "b.mp4", "m1", "cfg", T0))
    assert add_crossings(engine, crossings("fast")) == len(LINES)
    with engine.begin() as conn:
        conn.execute(insert(CrossingRow), [_orm_values(c, slow) for c in crossings("slow")])
    fast_rows, slow_rows = stored(engine, fast), stored(engine, slow)
    assert [r[:-2] for r in fast_rows] == [r[:-2] for r in slow_rows]
    assert [r[0] for r in fast_rows] == LINES
    with engine.connect() as conn:
        back = conn.scalars(select(CrossingRow.ts).where(CrossingRow.attempt_id == fast)).all()
    assert sorted(back) == sorted(t.astimezone(UTC) for t in TIMES)


def test_bulk_inserted_times_compare_right_in_bucket_queries(engine: Engine) -> None:
    """On SQLite times are compared as text: a whole second must sort before its fractions."""
    begin_run(engine, RunInfo("r", CAM, "a.mp4", "m1", "cfg", T0))
    add_crossings(engine, crossings("r"))
    end = T0 + timedelta(hours=1)
    add_coverage(engine, "r", T0, end, 10)
    finish_run(engine, "r", status="complete", frames_analysed=1, media_start=T0, media_end=end)
    day = date(2024, 5, 1)
    buckets = bucket_counts(engine, CAM, width="hourly", start=day, end=day, class_name="truck")
    assert sum(b.count or 0 for b in buckets if b.start.hour == 10) == 3


@pytest.mark.parametrize(
    "ts",
    [T0, T0 + timedelta(microseconds=5), datetime(2024, 5, 1, 17, tzinfo=ZoneInfo("Asia/Jakarta"))],
)
def test_sqlite_text_matches_sqlalchemy(ts: datetime) -> None:
    from sqlalchemy import create_engine

    dialect = create_engine("sqlite://").dialect
    column = CrossingRow.__table__.c.ts.type
    expected = column.dialect_impl(dialect).bind_processor(dialect)(ts)
    assert sqlite_utc_text(ts) == expected
