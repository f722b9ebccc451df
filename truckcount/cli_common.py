"""What every ``truckcount`` command shares: turning library errors into one line on stderr and
a non-zero exit, reading the config, parsing times from options."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from truckcount.config import AppConfig, ConfigError, load_config
from truckcount.ingest.errors import first_line

T = TypeVar("T")
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file", show_default=False)
]
LabelFixesOpt = Annotated[
    Path | None,
    typer.Option(
        help="CSV of class corrections to the labels (image,line,was,to,note)",
        show_default=False,
    ),
]


def user_errors() -> tuple[type[BaseException], ...]:
    from truckcount.detector.data import LabelError
    from truckcount.detector.weights import CheckpointError
    from truckcount.ingest import SourceError
    from truckcount.storage.database import StorageError

    return (ConfigError, SourceError, StorageError, CheckpointError, LabelError, ValueError)


def guard(fn: Callable[[], T]) -> T:
    """Run ``fn``; a known error becomes one line on stderr and exit status 1."""
    try:
        return fn()
    except user_errors() as exc:
        typer.echo(f"error: {first_line(exc)}", err=True)
        raise typer.Exit(1) from None


def config_from(path: Path | None) -> AppConfig:
    return load_config(path) if path is not None else AppConfig()


def parse_instant(option: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(
            f"{option} {value!r} is not ISO 8601 (e.g. 2021-11-15T13:17:09+07:00)"
        ) from exc
    if ts.utcoffset() is None:
        raise ValueError(f"{option} {value!r} needs a UTC offset, e.g. +07:00")
    return ts


def parse_start(value: str | None) -> datetime | None:
    return parse_instant("--start", value)


def parse_day(option: str, value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{option} {value!r} is not a day, expected YYYY-MM-DD") from None
