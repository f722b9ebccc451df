"""Alembic environment: runs migrations on a connection handed over by ``open_database``.

There is no ``alembic.ini``. ``truckcount.storage.repository`` builds the ``Config`` in code and
passes an open connection in ``config.attributes["connection"]``. For the ``alembic`` command line,
set ``sqlalchemy.url`` on the config instead.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from truckcount.storage.models import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Migrate the given connection, or one opened from ``sqlalchemy.url``."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection given and no sqlalchemy.url set on the Alembic config")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported; run against a database")
run_online()
