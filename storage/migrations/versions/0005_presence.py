"""Truck presence per 15-minute slot, for the "share of frames with a truck" of a bucket.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23

``presence`` holds, per run attempt and 15-minute UTC slot, how many frames the presence
classifier looked at and how many of them it judged to hold a truck. Slots tile local hours and
days in every time zone, so a bucket's share is the sum of its slots' truck frames over the sum
of their frames. Like coverage, a row belongs to an attempt and counts only while that attempt is
the visible vintage of its source. Databases written before this revision have no presence rows:
their buckets read no share (NULL), not 0.
This file is frozen: change the schema with a new revision, never by editing this one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Add the ``presence`` table."""
    op.create_table(
        "presence",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("attempt_id", sa.String(128), nullable=False),
        sa.Column("run_id", sa.String(128), nullable=False),
        sa.Column("camera_id", sa.String(128), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("truck_frames", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "frames >= 1 AND truck_frames >= 0 AND truck_frames <= frames",
            name="ck_presence_tally",
        ),
        sa.ForeignKeyConstraint(
            ["attempt_id"], ["runs.attempt_id"], name="fk_presence_attempt_id_runs"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_presence"),
        sa.UniqueConstraint("attempt_id", "start", name="uq_presence_attempt_id_start"),
    )
    op.create_index("ix_presence_camera_id_start", "presence", ["camera_id", "start"])


def downgrade() -> None:
    """Drop the ``presence`` table."""
    op.drop_index("ix_presence_camera_id_start", table_name="presence")
    op.drop_table("presence")
