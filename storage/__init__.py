"""Storage: crossings, coverage and runs in SQL (SQLite or PostgreSQL), read back as buckets.

``open_database(url)`` migrates the schema to the newest Alembic revision and returns an engine;
the functions of ``repository`` (writing) and ``query`` (reading) take that engine first and speak
truckcount's types.
"""

from truckcount.storage.database import (
    DatabaseUnavailable,
    StorageError,
    UnknownCameraError,
    mask_url,
    open_database,
)
from truckcount.storage.models import RunStatus
from truckcount.storage.query import (
    bucket_counts,
    bucket_frame,
    count_crossings,
    daily_counts,
    stored_series,
    visible_runs,
)
from truckcount.storage.repository import (
    RunRecord,
    add_coverage,
    add_crossings,
    begin_run,
    camera_timezone,
    ensure_camera,
    finish_run,
    list_runs,
)

__all__ = [
    "DatabaseUnavailable",
    "RunRecord",
    "RunStatus",
    "StorageError",
    "UnknownCameraError",
    "add_coverage",
    "add_crossings",
    "begin_run",
    "bucket_counts",
    "bucket_frame",
    "camera_timezone",
    "count_crossings",
    "daily_counts",
    "ensure_camera",
    "finish_run",
    "list_runs",
    "mask_url",
    "open_database",
    "stored_series",
    "visible_runs",
]
