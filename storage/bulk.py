"""Fast crossing inserts: PostgreSQL ``COPY`` and a lean SQLite ``executemany``.

Both paths bypass SQLAlchemy's per-row statement building; values go through the columns' own
bind processors, so what is stored is exactly what an ORM insert would have stored. With
``skip_duplicates`` a crossing whose (attempt, line, track) is already stored is left out, which
is what makes replaying a spool idempotent; without it a duplicate is a ``StorageError``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from truckcount.storage.database import DatabaseUnavailable, StorageError, describe_error
from truckcount.storage.models import CrossingRow

COLUMNS = (
    "attempt_id",
    "run_id",
    "camera_id",
    "line_id",
    "track_id",
    "class_name",
    "direction",
    "direction_name",
    "ts",
    "confidence",
    "model_version",
)
_TS = COLUMNS.index("ts")


def insert_crossings(
    conn: Connection, rows: Sequence[tuple[Any, ...]], *, skip_duplicates: bool = False
) -> int:
    """Insert ``rows`` (values in ``COLUMNS`` order, ``ts`` aware) inside ``conn``'s transaction.

    Returns:
        How many rows were inserted (fewer than given only with ``skip_duplicates``).

    Raises:
        StorageError: a row repeats a stored (attempt, line, track) and ``skip_duplicates`` is
            false, or breaks another constraint.
        DatabaseUnavailable: the connection broke during a ``COPY``.
    """
    if not rows:
        return 0
    name = conn.dialect.name
    if skip_duplicates:
        return _insert_ignoring(conn, rows)
    if name == "postgresql":
        return _copy_postgresql(conn, rows)
    if name == "sqlite":
        return _executemany_sqlite(conn, rows)
    conn.execute(insert(CrossingRow), [dict(zip(COLUMNS, r, strict=True)) for r in rows])
    return len(rows)


def _copy_postgresql(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> int:
    import psycopg

    columns = ", ".join(COLUMNS)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor.copy(f"COPY crossings ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    except psycopg.IntegrityError as exc:
        raise StorageError(f"crossings rejected: {_first_line(exc)}") from None
    except psycopg.OperationalError as exc:
        conn.invalidate()  # the pool must not hand this connection out again
        raise DatabaseUnavailable(f"database unreachable: {_first_line(exc)}") from exc
    finally:
        cursor.close()
    return len(rows)


def _executemany_sqlite(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> int:
    to_text = _ts_processor(conn)
    marks = ", ".join("?" * len(COLUMNS))
    sql = f"INSERT INTO crossings ({', '.join(COLUMNS)}) VALUES ({marks})"
    values = [(*r[:_TS], to_text(r[_TS]), *r[_TS + 1 :]) for r in rows]
    try:
        conn.exec_driver_sql(sql, values)
    except IntegrityError as exc:
        raise StorageError(f"crossings rejected: {describe_error(exc, conn.engine.url)}") from exc
    return len(rows)


def _insert_ignoring(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> int:
    dialect = {"postgresql": postgresql, "sqlite": sqlite}.get(conn.dialect.name)
    if dialect is None:
        raise StorageError(f"replaying crossings is not supported on {conn.dialect.name}")
    stmt = dialect.insert(CrossingRow).on_conflict_do_nothing(
        index_elements=["attempt_id", "line_id", "track_id"]
    )
    result = conn.execute(stmt, [dict(zip(COLUMNS, row, strict=True)) for row in rows])
    return result.rowcount if result.rowcount >= 0 else len(rows)


def _ts_processor(conn: Connection) -> Callable[[Any], Any]:
    column_type = CrossingRow.__table__.c.ts.type
    process = column_type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    return process if process is not None else (lambda v: v)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
