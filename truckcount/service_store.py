"""What the service itself keeps in the database: job executions and nightly model evaluations.

These two tables belong to the service, like APScheduler's own ``apscheduler_jobs`` job store
beside them: they are created on first use (``ensure_tables``) rather than by the counting
schema's Alembic migrations, so the counting schema stays the same whether or not a service ever
ran against it. Nothing in the counts depends on them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
)

from truckcount.storage.models import UTCDateTime

metadata = MetaData()

job_runs = Table(
    "service_job_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job", String(64), nullable=False, index=True),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=False),
    Column("status", String(16), nullable=False),  # ok | failed
    Column("detail", Text, nullable=False),  # JSON object
)

model_evaluations = Table(
    "service_model_evaluations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("evaluated_at", UTCDateTime(), nullable=False, index=True),
    Column("model_version", String(128), nullable=False),
    Column("data", Text, nullable=False),
    Column("split", String(16), nullable=False),
    Column("figures", Text, nullable=False),  # JSON: the evaluation report
)


@dataclass(frozen=True)
class JobRecord:
    """One execution of a scheduled job; ``detail`` is what the job reported (JSON-safe)."""

    job: str
    started_at: datetime
    finished_at: datetime
    status: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class EvaluationRecord:
    """One evaluation of a model on labelled frames; ``figures`` is the detector report."""

    evaluated_at: datetime
    model_version: str
    data: str
    split: str
    figures: dict[str, Any]


def ensure_tables(engine: Engine) -> None:
    """Create the service's tables if they are missing (safe to call on every start)."""
    metadata.create_all(engine, checkfirst=True)


def record_job(engine: Engine, rec: JobRecord) -> None:
    """Store one job execution."""
    values = {
        "job": rec.job,
        "started_at": rec.started_at,
        "finished_at": rec.finished_at,
        "status": rec.status,
        "detail": json.dumps(rec.detail, sort_keys=True, default=str),
    }
    with engine.begin() as conn:
        conn.execute(insert(job_runs).values(values))


def recent_jobs(engine: Engine, job: str | None = None, limit: int = 20) -> list[JobRecord]:
    """The newest job executions first, of one job or all."""
    stmt = select(job_runs).order_by(job_runs.c.id.desc()).limit(limit)
    if job is not None:
        stmt = stmt.where(job_runs.c.job == job)
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return [
        JobRecord(r.job, r.started_at, r.finished_at, r.status, json.loads(r.detail)) for r in rows
    ]


def record_evaluation(engine: Engine, rec: EvaluationRecord) -> None:
    """Store the figures of one model evaluation."""
    values = {
        "evaluated_at": rec.evaluated_at,
        "model_version": rec.model_version,
        "data": rec.data,
        "split": rec.split,
        "figures": json.dumps(rec.figures, sort_keys=True, default=str),
    }
    with engine.begin() as conn:
        conn.execute(insert(model_evaluations).values(values))


def evaluations(engine: Engine, limit: int = 20) -> list[EvaluationRecord]:
    """The newest model evaluations first."""
    stmt = select(model_evaluations).order_by(model_evaluations.c.id.desc()).limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return [
        EvaluationRecord(r.evaluated_at, r.model_version, r.data, r.split, json.loads(r.figures))
        for r in rows
    ]


def ping(engine: Engine) -> None:
    """Raise if the database cannot answer a trivial query."""
    with engine.connect() as conn:
        conn.execute(select(1)).scalar_one()
