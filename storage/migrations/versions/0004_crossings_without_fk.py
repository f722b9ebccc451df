"""Crossings without a foreign key to runs, for bulk insert speed.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

A foreign key fires a check per inserted row; on PostgreSQL that was about a third of the cost of
a ``COPY`` of crossings. ``add_crossings`` checks, in the same transaction, that the attempt
exists and is running, and attempts are never deleted, so the key added no protection there.
Coverage keeps its key (a handful of rows per run).
This file is frozen: change the schema with a new revision, never by editing this one.
"""

from __future__ import annotations

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Drop the crossings -> runs foreign key."""
    with op.batch_alter_table("crossings") as batch:
        batch.drop_constraint("fk_crossings_attempt_id_runs", type_="foreignkey")


def downgrade() -> None:
    """Add the foreign key back."""
    with op.batch_alter_table("crossings") as batch:
        batch.create_foreign_key(
            "fk_crossings_attempt_id_runs", "runs", ["attempt_id"], ["attempt_id"]
        )
