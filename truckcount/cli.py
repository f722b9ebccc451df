"""The ``truckcount`` command line (Typer).

Library errors are turned into one line on stderr and a non-zero exit here, and only here.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from truckcount.cli_common import (
    ConfigOpt,
    config_from,
    guard,
    parse_day,
    parse_instant,
    parse_start,
)
from truckcount.config import AppConfig, load_config

app = typer.Typer(
    help="Trustworthy time-series truck counts from traffic-camera video.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
eval_app = typer.Typer(help="Measure the detector and the counts.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")
db_app = typer.Typer(help="Manage the database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")

log = logging.getLogger("truckcount")

OutputFormatOpt = Literal["table", "csv", "json", "parquet"]


def _configured_series(cfg: AppConfig, camera_id: str) -> tuple[tuple[str, str], ...]:
    """(line, direction) pairs the config gives the camera; none if it is not configured."""
    cams = [c for c in cfg.cameras if c.id == camera_id]
    return tuple(
        (ln.id, name)
        for c in cams
        for ln in c.lines
        for name in (ln.directions.in_, ln.directions.out)
    )


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="warnings and errors only")] = False,
) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if not verbose:
        logging.getLogger("alembic").setLevel(logging.WARNING)  # migration chatter


@app.command()
def run(
    video: Annotated[Path, typer.Argument(help="recorded video file", show_default=False)],
    camera: Annotated[str, typer.Option(help="camera id from the config")],
    config: ConfigOpt = None,
    start: Annotated[
        str | None, typer.Option(help="wall-clock time of the first frame, ISO 8601 with offset")
    ] = None,
) -> None:
    """Count crossings in a recorded video and store them (a rerun replaces the earlier run)."""
    from truckcount.pipeline import run_recording

    def go() -> None:
        from truckcount.ingest.live import is_live

        if is_live(str(video)):
            raise ValueError("the source is a live stream or device; use `truckcount live`")
        cfg = config_from(config)
        info, stats = run_recording(cfg, camera, source=str(video), start=parse_start(start))
        typer.echo(
            f"run {info.run_id}: {stats.frames} frames, {stats.crossings} crossings "
            f"(model {info.model_version})"
        )

    guard(go)


@app.command()
def backfill(
    paths: Annotated[
        list[Path],
        typer.Argument(help="recording files, or folders of them", show_default=False),
    ],
    config: ConfigOpt = None,
    shard: Annotated[
        str, typer.Option(help="K/N: count only share K of N (one per machine or job)")
    ] = "1/1",
) -> None:
    """Count every recording not counted yet; names give camera and start (watch_pattern)."""
    from truckcount.backfill import Shard, backfill

    def go() -> int:
        part = Shard.parse(shard)
        report = backfill(config_from(config), paths, part)
        typer.echo(
            f"shard {part.index + 1}/{part.count}: {len(report.processed)} counted, "
            f"{len(report.already_done)} already counted, {len(report.failed)} failed, "
            f"{report.other_shards} in other shards, {len(report.unmatched)} not recordings"
        )
        for name, reason in report.failed:
            typer.echo(f"failed: {name}: {reason}", err=True)
        return 1 if report.failed else 0

    status = guard(go)
    if status:
        raise typer.Exit(status)


@app.command()
def counts(
    camera: Annotated[str, typer.Option(help="camera id")],
    config: ConfigOpt = None,
    db: Annotated[str | None, typer.Option(help="database URL (overrides the config)")] = None,
    hourly: Annotated[
        bool, typer.Option("--hourly/--daily", help="local clock hours, or local days")
    ] = False,
    from_: Annotated[str | None, typer.Option("--from", help="first local day, YYYY-MM-DD")] = None,
    to: Annotated[str | None, typer.Option("--to", help="last local day, YYYY-MM-DD")] = None,
    tz: Annotated[str | None, typer.Option(help="IANA zone of the local day")] = None,
    vehicle: Annotated[str, typer.Option("--class", help="truck, bus or car")] = "truck",
    line: Annotated[str | None, typer.Option(help="only this line id")] = None,
    direction: Annotated[str | None, typer.Option(help="only this direction name")] = None,
    as_of: Annotated[
        str | None, typer.Option(help="what was known at this instant, ISO 8601 with offset")
    ] = None,
    model_version: Annotated[str | None, typer.Option(help="only this model version")] = None,
    fmt: Annotated[
        OutputFormatOpt, typer.Option("--format", help="table, csv, json or parquet")
    ] = "table",
    output: Annotated[
        Path | None, typer.Option(help="write to this file instead (needed for parquet)")
    ] = None,
) -> None:
    """Print hourly or daily counts per line and direction; uncovered buckets print empty."""
    from truckcount.query import CountsRequest, OutputFormat, fetch, render, write_parquet
    from truckcount.types import BucketWidth

    def go() -> None:
        cfg = config_from(config)
        req = CountsRequest(
            camera_id=camera,
            width=BucketWidth.HOURLY if hourly else BucketWidth.DAILY,
            tz=tz,
            start=parse_day("--from", from_),
            end=parse_day("--to", to),
            line_id=line,
            vehicle=vehicle,
            direction_name=direction,
            as_of=parse_instant("--as-of", as_of),
            model_version=model_version,
            known_series=_configured_series(cfg, camera),
        )
        if fmt == "parquet" and output is None:
            raise ValueError("--format parquet writes a file: give --output FILE")
        buckets, zone = fetch(db or cfg.storage.url, req)
        if fmt == "parquet" and output is not None:
            write_parquet(buckets, zone, output)
        elif output is not None:
            try:
                output.write_text(render(buckets, req, zone, OutputFormat(fmt)) + "\n")
            except OSError as exc:
                raise ValueError(f"cannot write {output}: {exc.strerror or exc}") from None
        else:
            typer.echo(render(buckets, req, zone, OutputFormat(fmt)))

    guard(go)


@db_app.command("upgrade")
def db_upgrade(
    config: ConfigOpt = None,
    db: Annotated[str | None, typer.Option(help="database URL (overrides the config)")] = None,
) -> None:
    """Create the database if it is a missing SQLite file, and migrate it to the newest schema."""
    from truckcount.storage import mask_url, open_database

    def go() -> None:
        url = db or config_from(config).storage.url
        open_database(url).dispose()
        typer.echo(f"{mask_url(url)}: schema is up to date")

    guard(go)


@db_app.command("replay")
def db_replay(
    config: ConfigOpt = None,
    db: Annotated[str | None, typer.Option(help="database URL (overrides the config)")] = None,
    spool: Annotated[
        Path | None, typer.Option(help="spool folder (default: from the config, or beside the db)")
    ] = None,
) -> None:
    """Write what was spooled while the database was unreachable; safe to run more than once."""
    from truckcount.storage import mask_url, open_database
    from truckcount.storage.spool import replay_folder
    from truckcount.storage.writer import default_spool_dir

    def go() -> None:
        cfg = config_from(config)
        url = db or cfg.storage.url
        folder = spool or cfg.storage.spool_dir or default_spool_dir(url)
        engine = open_database(url)
        try:
            report = replay_folder(engine, folder)
        finally:
            engine.dispose()
        busy = f"; {report.busy} still being written, left alone" if report.busy else ""
        if report.foreign:
            busy += f"; {report.foreign} spooled for another database, left alone"
        typer.echo(
            f"{mask_url(url)}: replayed {report.files} spool file(s), "
            f"{report.records} write(s) from {folder}{busy}"
        )

    guard(go)


@app.command("validate-config")
def validate_config(path: Annotated[Path, typer.Argument(help="YAML config file")]) -> None:
    """Check a config file; print its cameras and lines, or the first error."""

    def go() -> None:
        cfg = load_config(path)
        typer.echo(f"{path}: ok, {len(cfg.cameras)} camera(s), digest {cfg.digest()}")
        for cam in cfg.cameras:
            lines = ", ".join(ln.id for ln in cam.lines)
            typer.echo(f"  {cam.id} ({cam.timezone}): lines {lines}")

    guard(go)


from truckcount.cli_detector import register as register_detector  # noqa: E402 (needs the apps)
from truckcount.cli_eval import register as register_eval  # noqa: E402
from truckcount.cli_service import register as register_service  # noqa: E402

register_detector(app, eval_app)
register_eval(eval_app)
register_service(app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
