"""SQLAlchemy tables: cameras, runs, the crossings every count is built from, coverage, presence.

Every timestamp column is an instant in UTC. SQLite has no time zone type, so ``UTCDateTime``
stores naive UTC there and hands back timezone-aware UTC datetimes on every backend.
The schema itself is created by the Alembic migrations in ``migrations/``; these models must
stay in step with them (``tests/test_storage.py`` compares the two).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so later migrations can alter them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# 64-bit ids on PostgreSQL; SQLite only autoincrements an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class RunStatus(StrEnum):
    """Life cycle of a processing run; only ``COMPLETE`` runs count."""

    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime stored as UTC; naive values are rejected.

    PostgreSQL keeps ``timestamp with time zone``; SQLite keeps naive UTC text. Both come back as
    aware datetimes in UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"expected a timezone-aware datetime, got naive {value!r}")
        utc = value.astimezone(UTC)
        return utc if dialect.name == "postgresql" else utc.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base holding the one ``MetaData`` of truckcount."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class CameraRow(Base):
    """A camera and the time zone of its local day."""

    __tablename__ = "cameras"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    timezone: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RunRow(Base):
    """One attempt at one processing run, with its provenance and outcome.

    ``run_id`` is the logical run (same camera, source, start and model); every attempt at it is
    a row of its own, named by ``attempt_id``. Crossings and coverage belong to an attempt, so a
    rerun writes beside the earlier attempt and replaces it only when it completes.
    """

    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint("status IN ('running', 'complete', 'failed')", name="status"),
        Index("ix_runs_run_id", "run_id"),
    )

    attempt_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(128))
    camera_id: Mapped[str] = mapped_column(String(128), ForeignKey("cameras.id"))
    source: Mapped[str] = mapped_column(Text)
    model_version: Mapped[str] = mapped_column(String(128))
    config_hash: Mapped[str] = mapped_column(String(64))
    code_version: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16))
    frames_analysed: Mapped[int] = mapped_column(Integer)
    media_start: Mapped[datetime | None] = mapped_column(UTCDateTime())
    media_end: Mapped[datetime | None] = mapped_column(UTCDateTime())
    available_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class CrossingRow(Base):
    """One vehicle crossing one counting line (``truckcount.types.Crossing``)."""

    __tablename__ = "crossings"
    __table_args__ = (
        CheckConstraint("direction IN ('in', 'out')", name="direction"),
        UniqueConstraint("attempt_id", "line_id", "track_id"),
        Index("ix_crossings_camera_id_ts", "camera_id", "ts"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # No foreign key (migration 0004): a per-row check slowed bulk inserts by a third, and
    # add_crossings checks the attempt in the same transaction.
    attempt_id: Mapped[str] = mapped_column(String(128))
    run_id: Mapped[str] = mapped_column(String(128))
    camera_id: Mapped[str] = mapped_column(String(128))
    line_id: Mapped[str] = mapped_column(String(128))
    track_id: Mapped[int] = mapped_column(BigInteger)
    class_name: Mapped[str] = mapped_column(String(32))
    direction: Mapped[str] = mapped_column(String(8))
    direction_name: Mapped[str] = mapped_column(String(64))
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    confidence: Mapped[float] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(128))


class CoverageRow(Base):
    """A span of video one run analysed: buckets inside it count, buckets outside read NULL."""

    __tablename__ = "coverage"
    __table_args__ = (
        CheckConstraint('"end" >= start', name="ordered"),
        Index("ix_coverage_attempt_id", "attempt_id"),
        Index("ix_coverage_camera_id_start", "camera_id", "start"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    attempt_id: Mapped[str] = mapped_column(String(128), ForeignKey("runs.attempt_id"))
    run_id: Mapped[str] = mapped_column(String(128))
    camera_id: Mapped[str] = mapped_column(String(128))
    start: Mapped[datetime] = mapped_column(UTCDateTime())
    end: Mapped[datetime] = mapped_column(UTCDateTime())
    frames_analysed: Mapped[int] = mapped_column(Integer)
    frames_dropped: Mapped[int] = mapped_column(Integer)
    gap_reason: Mapped[str | None] = mapped_column(Text)


class PresenceRow(Base):
    """Frames of one 15-minute UTC slot the truck-presence classifier looked at, and how many of
    them it judged to hold a truck (``truckcount.types.PresenceSlot``)."""

    __tablename__ = "presence"
    __table_args__ = (
        CheckConstraint(
            "frames >= 1 AND truck_frames >= 0 AND truck_frames <= frames", name="tally"
        ),
        UniqueConstraint("attempt_id", "start"),
        Index("ix_presence_camera_id_start", "camera_id", "start"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    attempt_id: Mapped[str] = mapped_column(String(128), ForeignKey("runs.attempt_id"))
    run_id: Mapped[str] = mapped_column(String(128))
    camera_id: Mapped[str] = mapped_column(String(128))
    start: Mapped[datetime] = mapped_column(UTCDateTime())
    frames: Mapped[int] = mapped_column(Integer)
    truck_frames: Mapped[int] = mapped_column(Integer)
