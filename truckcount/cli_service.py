"""``truckcount live``, ``serve`` and ``status``: the long-running side."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from truckcount.cli_common import ConfigOpt, config_from, guard
from truckcount.config import AppConfig

log = logging.getLogger("truckcount")


def live(
    config: Annotated[Path, typer.Option("--config", "-c", help="YAML config file")],
    camera: Annotated[
        list[str] | None, typer.Option(help="camera id (repeat); default: every camera")
    ] = None,
    duration: Annotated[
        float | None, typer.Option(min=0, help="stop after this many seconds")
    ] = None,
) -> None:
    """Count crossings on live cameras until Ctrl-C / SIGTERM, in segment runs of the cameras'
    ``segment_seconds``; the open segment is closed cleanly on exit."""
    import signal
    import threading

    from truckcount.live import LiveOptions, run_live

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: closing the open segments", signum)
        stop.set()

    def go() -> None:
        cfg = config_from(config)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)
        report = run_live(cfg, camera or [], LiveOptions(duration_s=duration), stop)
        typer.echo(
            f"{report.segment_runs} segment runs, {report.frames} frames, "
            f"{report.crossings} crossings, {len(report.outages)} outages"
        )

    guard(go)


def serve(
    config: Annotated[Path, typer.Option("--config", "-c", help="YAML config file")],
    host: Annotated[
        str | None, typer.Option(help="address to bind (default: service.host)")
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="port (default: service.port)")
    ] = None,
) -> None:
    """Serve the HTTP API and dashboard, and run the scheduled jobs, until SIGTERM/SIGINT."""
    from truckcount.service import serve as run_service

    guard(lambda: run_service(config, host, port))


def status(
    config: ConfigOpt = None,
    db: Annotated[str | None, typer.Option(help="database URL (overrides the config)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON like GET /cameras")] = False,
) -> None:
    """Print every camera's status: last frame, frame rate, runs, coverage today."""
    from truckcount.status import collect, format_table
    from truckcount.storage import open_database

    def go() -> str:
        cfg = config_from(config) if config is not None else None
        engine = open_database(db or (cfg or AppConfig()).storage.url, create=False)
        try:
            found = collect(engine, cfg)
        finally:
            engine.dispose()
        if as_json:
            return json.dumps({"cameras": [s.to_json() for s in found]}, indent=1)
        return format_table(found)

    typer.echo(guard(go))


def register(app: typer.Typer) -> None:
    """Add these commands to the ``truckcount`` application."""
    app.command()(live)
    app.command()(serve)
    app.command()(status)
