"""The ``truckcount`` command line (Typer).

Library errors are turned into one line on stderr and a non-zero exit here, and only here.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer

from truckcount.config import AppConfig, ConfigError, load_config

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
T = TypeVar("T")

OutputFormatOpt = Literal["table", "csv", "json", "parquet"]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file", show_default=False)
]


def _user_errors() -> tuple[type[BaseException], ...]:
    from truckcount.detector.data import LabelError
    from truckcount.detector.weights import CheckpointError
    from truckcount.ingest import SourceError
    from truckcount.storage.database import StorageError

    return (ConfigError, SourceError, StorageError, CheckpointError, LabelError, ValueError)


def _guard(fn: Callable[[], T]) -> T:
    """Run ``fn``; a known error becomes one line on stderr and exit status 1."""
    try:
        return fn()
    except _user_errors() as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        typer.echo(f"error: {msg}", err=True)
        raise typer.Exit(1) from None


def _config(path: Path | None) -> AppConfig:
    return load_config(path) if path is not None else AppConfig()


def _parse_instant(option: str, value: str | None) -> datetime | None:
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


def _parse_start(value: str | None) -> datetime | None:
    return _parse_instant("--start", value)


def _parse_day(option: str, value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{option} {value!r} is not a day, expected YYYY-MM-DD") from None


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
        cfg = _config(config)
        info, stats = run_recording(cfg, camera, source=str(video), start=_parse_start(start))
        typer.echo(
            f"run {info.run_id}: {stats.frames} frames, {stats.crossings} crossings "
            f"(model {info.model_version})"
        )

    _guard(go)


@app.command()
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
        cfg = _config(config)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)
        report = run_live(cfg, camera or [], LiveOptions(duration_s=duration), stop)
        typer.echo(
            f"{report.segment_runs} segment runs, {report.frames} frames, "
            f"{report.crossings} crossings, {len(report.outages)} outages"
        )

    _guard(go)


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
        cfg = _config(config)
        req = CountsRequest(
            camera_id=camera,
            width=BucketWidth.HOURLY if hourly else BucketWidth.DAILY,
            tz=tz,
            start=_parse_day("--from", from_),
            end=_parse_day("--to", to),
            line_id=line,
            vehicle=vehicle,
            direction_name=direction,
            as_of=_parse_instant("--as-of", as_of),
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

    _guard(go)


@db_app.command("upgrade")
def db_upgrade(
    config: ConfigOpt = None,
    db: Annotated[str | None, typer.Option(help="database URL (overrides the config)")] = None,
) -> None:
    """Create the database if it is a missing SQLite file, and migrate it to the newest schema."""
    from truckcount.storage import mask_url, open_database

    def go() -> None:
        url = db or _config(config).storage.url
        open_database(url).dispose()
        typer.echo(f"{mask_url(url)}: schema is up to date")

    _guard(go)


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
        cfg = _config(config)
        url = db or cfg.storage.url
        folder = spool or cfg.storage.spool_dir or default_spool_dir(url)
        engine = open_database(url)
        try:
            report = replay_folder(engine, folder)
        finally:
            engine.dispose()
        busy = f"; {report.busy} still being written, left alone" if report.busy else ""
        typer.echo(
            f"{mask_url(url)}: replayed {report.files} spool file(s), "
            f"{report.records} write(s) from {folder}{busy}"
        )

    _guard(go)


@app.command("validate-config")
def validate_config(path: Annotated[Path, typer.Argument(help="YAML config file")]) -> None:
    """Check a config file; print its cameras and lines, or the first error."""

    def go() -> None:
        cfg = load_config(path)
        typer.echo(f"{path}: ok, {len(cfg.cameras)} camera(s), digest {cfg.digest()}")
        for cam in cfg.cameras:
            lines = ", ".join(ln.id for ln in cam.lines)
            typer.echo(f"  {cam.id} ({cam.timezone}): lines {lines}")

    _guard(go)


@app.command()
def train(
    data: Annotated[Path, typer.Argument(help="YOLO-format dataset folder (images/, labels/)")],
    output: Annotated[Path, typer.Option(help="folder for checkpoints and log")] = Path(
        "runs/train"
    ),
    epochs: Annotated[int, typer.Option(min=1)] = 28,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    lr: Annotated[float, typer.Option(min=0)] = 2e-3,
    input_size: Annotated[int, typer.Option(min=64, max=1280)] = 320,
    seed: int = 0,
    workers: Annotated[int, typer.Option(min=0)] = 1,
    device: str = "auto",
    amp: Annotated[bool, typer.Option(help="bf16 mixed precision")] = True,
    ema_decay: Annotated[
        float, typer.Option(min=0, max=0.99999, help="weight average decay; 0 turns it off")
    ] = 0.999,
    resume: Annotated[Path | None, typer.Option(help="continue from this checkpoint")] = None,
    init: Annotated[Path | None, typer.Option(help="fine-tune from these weights")] = None,
    test_only: Annotated[bool, typer.Option("--test-only", help="only evaluate")] = False,
    limit: Annotated[int | None, typer.Option(help="use the first N training frames")] = None,
) -> None:
    """Train the detector from scratch (time split: validation = siang + late night)."""
    from truckcount.detector.train import TrainArgs
    from truckcount.detector.train import run as train_run

    args = TrainArgs(
        data=str(data),
        output=str(output),
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        input_size=input_size,
        seed=seed,
        workers=workers,
        device=device,
        amp=amp,
        ema_decay=ema_decay,
        resume=str(resume) if resume else None,
        init=str(init) if init else None,
        test_only=test_only,
        limit=limit,
    )
    report = _guard(lambda: train_run(args))
    typer.echo(json.dumps(report.get("all", {}), indent=None))


@app.command("export-weights")
def export_weights(
    checkpoint: Annotated[Path, typer.Argument(help="training checkpoint")],
    out: Annotated[Path, typer.Argument(help="slim weights file to write")],
) -> None:
    """Write the slim file that ships with the package."""
    from truckcount.detector.weights import export_weights as export

    version = _guard(lambda: export(checkpoint, out))
    typer.echo(f"wrote {out} ({version})")


@app.command("export-onnx")
def export_onnx(
    out: Annotated[Path, typer.Argument(help=".onnx file to write")],
    weights: Annotated[Path | None, typer.Option(help="checkpoint (default: shipped)")] = None,
    int8: Annotated[
        Path | None,
        typer.Option(help="also write OUT with .int8.onnx, calibrated on this labelled folder"),
    ] = None,
) -> None:
    """Export the detector network to ONNX (dynamic batch) for ``detector.runtime: onnx``."""
    from truckcount.config import DetectorConfig
    from truckcount.detector import onnx_runtime
    from truckcount.detector.infer import load_model

    def go() -> None:
        import torch

        model, version = load_model(weights or DetectorConfig().weights, torch.device("cpu"))
        onnx_runtime.export_onnx(model, version, out)
        typer.echo(f"wrote {out} ({version})")
        if int8 is not None:
            images = onnx_runtime.calibration_images(int8, model.cfg.input_size)
            q = out.with_suffix(".int8.onnx")
            onnx_runtime.quantize_int8(out, q, images)
            typer.echo(f"wrote {q} ({version}+int8, calibrated on {len(images)} frames)")

    _guard(go)


@eval_app.command("detect")
def eval_detect(
    data: Annotated[Path, typer.Argument(help="YOLO-format folder with images/ and labels/")],
    weights: Annotated[
        Path | None,
        typer.Option(help="checkpoint, or .onnx file for ONNX Runtime (default: shipped)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    threshold: Annotated[float | None, typer.Option(help="score threshold for P/R")] = None,
    split: Annotated[str, typer.Option(help="all, or the time split's val / train frames")] = "all",
) -> None:
    """COCO-style AP50 / AP50-95 per class, per sequence and day/night, and P/R at threshold."""
    from truckcount.detector.report import evaluate_folder, format_report

    def go() -> dict[str, Any]:
        return evaluate_folder(data, weights, threshold, split)

    report = _guard(go)
    typer.echo(json.dumps(report, indent=2) if as_json else format_report(report))


@app.command()
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

    _guard(lambda: run_service(config, host, port))


@app.command()
def status(
    config: ConfigOpt = None,
    db: Annotated[str | None, typer.Option(help="database URL (overrides the config)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON like GET /cameras")] = False,
) -> None:
    """Print every camera's status: last frame, frame rate, runs, coverage today."""
    from truckcount.status import collect, format_table
    from truckcount.storage import open_database

    def go() -> str:
        cfg = _config(config) if config is not None else None
        engine = open_database(db or (cfg or AppConfig()).storage.url, create=False)
        try:
            found = collect(engine, cfg)
        finally:
            engine.dispose()
        if as_json:
            return json.dumps({"cameras": [s.to_json() for s in found]}, indent=1)
        return format_table(found)

    typer.echo(_guard(go))


from truckcount.cli_eval import register  # noqa: E402 (needs eval_app)

register(eval_app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
