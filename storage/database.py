"""Opening the database: parse the URL, tune SQLite, migrate to the newest schema.

There is no ``alembic.ini``: the Alembic ``Config`` is built here, pointing at ``migrations/``
next to this file, and migrations run on the engine's own connection.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)

from truckcount.redact import is_secret_param

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"

_USERINFO = re.compile(r"^(?P<head>[^:/]+://[^:/@]*):[^/]*@")


class StorageError(RuntimeError):
    """The database cannot be opened, or a request does not fit what is stored."""


class DatabaseUnavailable(StorageError):
    """The database cannot be reached right now (server down, network gone, file not openable).

    Unlike other ``StorageError``s this one is worth retrying: ``storage.writer`` spools the
    write and replays it later.
    """


class UnknownCameraError(StorageError):
    """A camera id that is not in the ``cameras`` table; the message lists the known ids."""

    def __init__(self, camera_id: str, known: Iterable[str]) -> None:
        self.camera_id = camera_id
        self.known = tuple(known)
        listed = ", ".join(repr(k) for k in self.known) or "none"
        super().__init__(f"unknown camera {camera_id!r} (known cameras: {listed})")


def mask_url(url: str) -> str:
    """Return ``url`` with its password (in the user part or the query) replaced by ``***``,
    fit for messages and logs."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return _USERINFO.sub(r"\g<head>:***@", url)
    hidden = {k: "***" for k in parsed.query if is_secret_param(k)}
    shown = parsed.update_query_dict(hidden).render_as_string(hide_password=True)
    return shown.replace("%2A%2A%2A", "***")  # the query's stars, not percent-encoded


def open_database(url: str, *, create: bool = True) -> Engine:
    """Open the database at ``url`` and migrate it to the newest schema.

    Args:
        url: SQLAlchemy URL, e.g. ``sqlite:///counts.db`` or ``postgresql+psycopg://…``.
        create: whether a missing SQLite file may be created; other backends are never created.

    Returns:
        An engine; SQLite connections have WAL journaling and foreign keys switched on.

    Raises:
        DatabaseUnavailable: the database cannot be reached (a ``StorageError``).
        StorageError: the URL is invalid, the SQLite file is missing and ``create`` is false, or
            the database cannot be migrated. Messages never contain the password.
    """
    shown = mask_url(url)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise StorageError(f"invalid database URL {shown}") from None
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite:
        _prepare_sqlite_file(parsed, create=create)
    try:
        # pre_ping: after a server restart the pool's old connections are dead; test first.
        engine = create_engine(parsed, pool_pre_ping=True)
    except (ArgumentError, ImportError) as exc:
        raise StorageError(f"cannot use database {shown}: {describe_error(exc, parsed)}") from None
    if sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        with engine.begin() as conn:
            _upgrade(conn)
    except (OperationalError, InterfaceError) as exc:
        engine.dispose()
        why = describe_error(exc, parsed)
        raise DatabaseUnavailable(f"cannot open database {shown}: {why}") from None
    except (SQLAlchemyError, CommandError) as exc:
        engine.dispose()
        raise StorageError(f"cannot open database {shown}: {describe_error(exc, parsed)}") from None
    log.info("opened database %s", shown)
    return engine


def _prepare_sqlite_file(url: URL, *, create: bool) -> None:
    db = url.database
    if not db or db == ":memory:" or db.startswith("file:"):
        return
    path = Path(db)
    if path.exists():
        return
    if not create:
        raise StorageError(f"database not found: {path}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        in_way = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        why = f"{in_way} is a file" if in_way is not None else exc.strerror or exc
        raise DatabaseUnavailable(f"cannot create {path.parent}: {why}") from None


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()


MIGRATION_LOCK = 0x7472_7563_6B63  # "truckc": PostgreSQL advisory lock key of the migrations
"""Processes opening one PostgreSQL database at once migrate it one after the other."""


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":  # held until the migration's transaction ends
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


def describe_error(exc: BaseException, url: URL) -> str:
    """The driver's own words for ``exc``, without SQL and without the password."""
    text = str(exc.orig) if isinstance(exc, DBAPIError) else str(exc)
    text = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    if url.password:
        text = text.replace(str(url.password), "***")
    return text
