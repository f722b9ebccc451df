"""Initial schema: cameras, runs, crossings.

Revision ID: 0001
Revises:
Create Date: 2024-06-01

Timestamps are ``DateTime(timezone=True)``; the models' ``UTCDateTime`` decides what goes in.
This file is frozen: change the schema with a new revision, never by editing this one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create the three tables and their indexes."""
    op.create_table(
        "cameras",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cameras"),
    )
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(128), nullable=False),
        sa.Column("camera_id", sa.String(128), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("config_hash", sa.String(64), nullable=False),
        sa.Column("code_version", sa.String(64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("frames_analysed", sa.Integer(), nullable=False),
        sa.Column("media_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("media_end", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('running', 'complete', 'failed')", name="ck_runs_status"),
        sa.ForeignKeyConstraint(["camera_id"], ["cameras.id"], name="fk_runs_camera_id_cameras"),
        sa.PrimaryKeyConstraint("run_id", name="pk_runs"),
    )
    op.create_table(
        "crossings",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(128), nullable=False),
        sa.Column("camera_id", sa.String(128), nullable=False),
        sa.Column("line_id", sa.String(128), nullable=False),
        sa.Column("track_id", sa.BigInteger(), nullable=False),
        sa.Column("class_name", sa.String(32), nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("direction_name", sa.String(64), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.CheckConstraint("direction IN ('in', 'out')", name="ck_crossings_direction"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], name="fk_crossings_run_id_runs"),
        sa.PrimaryKeyConstraint("id", name="pk_crossings"),
        sa.UniqueConstraint(
            "run_id", "line_id", "track_id", name="uq_crossings_run_id_line_id_track_id"
        ),
    )
    op.create_index("ix_crossings_camera_id_ts", "crossings", ["camera_id", "ts"])
    op.create_index("ix_crossings_run_id", "crossings", ["run_id"])


def downgrade() -> None:
    """Drop everything ``upgrade`` created."""
    op.drop_index("ix_crossings_run_id", table_name="crossings")
    op.drop_index("ix_crossings_camera_id_ts", table_name="crossings")
    op.drop_table("crossings")
    op.drop_table("runs")
    op.drop_table("cameras")
