"""Coverage spans and run availability.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

``coverage`` records every span of video a run analysed, so a bucket without coverage reads NULL
instead of 0. ``runs.available_at`` is when a run's results became visible (it was marked
complete); as-of queries select on it. Existing complete runs get ``available_at = finished_at``
and one coverage span ``[media_start, media_end]``, the best that is known about them.
This file is frozen: change the schema with a new revision, never by editing this one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Add ``runs.available_at`` and the ``coverage`` table, and backfill both."""
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("available_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "coverage",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(128), nullable=False),
        sa.Column("camera_id", sa.String(128), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("frames_analysed", sa.Integer(), nullable=False),
        sa.Column("frames_dropped", sa.Integer(), nullable=False),
        sa.Column("gap_reason", sa.Text(), nullable=True),
        sa.CheckConstraint('"end" >= start', name="ck_coverage_ordered"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], name="fk_coverage_run_id_runs"),
        sa.PrimaryKeyConstraint("id", name="pk_coverage"),
    )
    op.create_index("ix_coverage_run_id", "coverage", ["run_id"])
    op.create_index("ix_coverage_camera_id_start", "coverage", ["camera_id", "start"])
    op.execute("UPDATE runs SET available_at = finished_at WHERE status = 'complete'")
    op.execute(
        'INSERT INTO coverage (run_id, camera_id, start, "end", frames_analysed, frames_dropped)'
        " SELECT run_id, camera_id, media_start, media_end, frames_analysed, 0 FROM runs"
        " WHERE status = 'complete' AND media_start IS NOT NULL AND media_end IS NOT NULL"
    )


def downgrade() -> None:
    """Drop what ``upgrade`` added."""
    op.drop_index("ix_coverage_camera_id_start", table_name="coverage")
    op.drop_index("ix_coverage_run_id", table_name="coverage")
    op.drop_table("coverage")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("available_at")
