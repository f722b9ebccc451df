"""Run attempts: a rerun writes beside the earlier attempt and replaces it only when complete.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

``runs`` gets one row per attempt, keyed by ``attempt_id``; ``run_id`` stays as the logical run.
Crossings and coverage point at the attempt. Existing rows become one attempt per run with
``attempt_id = run_id``. Crossings lose their ``run_id`` index: the unique (attempt, line, track)
index serves lookups by attempt, and one index fewer makes bulk inserts faster.
This file is frozen: change the schema with a new revision, never by editing this one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

ATTEMPT = sa.String(128)


def upgrade() -> None:
    """Key runs by attempt and point crossings and coverage at their attempt."""
    with op.batch_alter_table("crossings") as batch:
        batch.drop_constraint("fk_crossings_run_id_runs", type_="foreignkey")
    with op.batch_alter_table("coverage") as batch:
        batch.drop_constraint("fk_coverage_run_id_runs", type_="foreignkey")
    for table in ("runs", "crossings", "coverage"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("attempt_id", ATTEMPT, nullable=True))
        op.execute(f"UPDATE {table} SET attempt_id = run_id")
    with op.batch_alter_table("runs") as batch:
        batch.alter_column("attempt_id", existing_type=ATTEMPT, nullable=False)
        batch.drop_constraint("pk_runs", type_="primary")
        batch.create_primary_key("pk_runs", ["attempt_id"])
        batch.create_index("ix_runs_run_id", ["run_id"])
    with op.batch_alter_table("crossings") as batch:
        batch.alter_column("attempt_id", existing_type=ATTEMPT, nullable=False)
        batch.drop_constraint("uq_crossings_run_id_line_id_track_id", type_="unique")
        batch.drop_index("ix_crossings_run_id")
        batch.create_unique_constraint(
            "uq_crossings_attempt_id_line_id_track_id", ["attempt_id", "line_id", "track_id"]
        )
        batch.create_foreign_key(
            "fk_crossings_attempt_id_runs", "runs", ["attempt_id"], ["attempt_id"]
        )
    with op.batch_alter_table("coverage") as batch:
        batch.alter_column("attempt_id", existing_type=ATTEMPT, nullable=False)
        batch.drop_index("ix_coverage_run_id")
        batch.create_index("ix_coverage_attempt_id", ["attempt_id"])
        batch.create_foreign_key(
            "fk_coverage_attempt_id_runs", "runs", ["attempt_id"], ["attempt_id"]
        )


def downgrade() -> None:
    """Keep the newest attempt of every run (complete ones first) and go back to one row per run."""
    keep = (
        "SELECT attempt_id FROM runs AS r WHERE NOT EXISTS (SELECT 1 FROM runs AS o"
        " WHERE o.run_id = r.run_id AND (o.status = 'complete', o.started_at, o.attempt_id)"
        " > (r.status = 'complete', r.started_at, r.attempt_id))"
    )
    for table in ("crossings", "coverage", "runs"):
        op.execute(f"DELETE FROM {table} WHERE attempt_id NOT IN ({keep})")
    with op.batch_alter_table("coverage") as batch:
        batch.drop_constraint("fk_coverage_attempt_id_runs", type_="foreignkey")
        batch.drop_index("ix_coverage_attempt_id")
        batch.create_index("ix_coverage_run_id", ["run_id"])
        batch.drop_column("attempt_id")
    with op.batch_alter_table("crossings") as batch:
        batch.drop_constraint("fk_crossings_attempt_id_runs", type_="foreignkey")
        batch.drop_constraint("uq_crossings_attempt_id_line_id_track_id", type_="unique")
        batch.create_unique_constraint(
            "uq_crossings_run_id_line_id_track_id", ["run_id", "line_id", "track_id"]
        )
        batch.create_index("ix_crossings_run_id", ["run_id"])
        batch.drop_column("attempt_id")
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_run_id")
        batch.drop_constraint("pk_runs", type_="primary")
        batch.create_primary_key("pk_runs", ["run_id"])
        batch.drop_column("attempt_id")
    with op.batch_alter_table("crossings") as batch:
        batch.create_foreign_key("fk_crossings_run_id_runs", "runs", ["run_id"], ["run_id"])
    with op.batch_alter_table("coverage") as batch:
        batch.create_foreign_key("fk_coverage_run_id_runs", "runs", ["run_id"], ["run_id"])
