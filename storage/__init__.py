"""Storage: crossings and runs in SQL (SQLite or PostgreSQL), read back as daily counts.

``open_database(url)`` migrates the schema to the newest Alembic revision and returns an engine;
the functions of ``repository`` take that engine first and speak truckcount's types.
"""

from truckcount.storage.database import (
    StorageError,
    UnknownCameraError,
    mask_url,
    open_database,
)
from truckcount.storage.models import RunStatus
from truckcount.storage.repository import (
    RunRecord,
    add_crossings,
    begin_run,
    camera_timezone,
    count_crossings,
    daily_counts,
    ensure_camera,
    finish_run,
    list_runs,
)

__all__ = [
    "RunRecord",
    "RunStatus",
    "StorageError",
    "UnknownCameraError",
    "add_crossings",
    "begin_run",
    "camera_timezone",
    "count_crossings",
    "daily_counts",
    "ensure_camera",
    "finish_run",
    "list_runs",
    "mask_url",
    "open_database",
]
