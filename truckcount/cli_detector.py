"""The detector commands: ``train``, ``train-presence``, ``export-weights``, ``export-onnx``,
``eval detect``."""

from __future__ import annotations

import json
import logging
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from truckcount.cli_common import LabelFixesOpt, guard

log = logging.getLogger("truckcount")


class FixesAs(StrEnum):
    """What a label fix does to its box in training (``--label-fixes-as``)."""

    CLASS = "class"
    AMBIGUOUS = "ambiguous"


def train(
    data: Annotated[Path, typer.Argument(help="YOLO-format dataset folder (images/, labels/)")],
    output: Annotated[Path, typer.Option(help="folder for checkpoints and log")] = Path(
        "runs/train"
    ),
    epochs: Annotated[int, typer.Option(min=1)] = 12,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    lr: Annotated[float, typer.Option(min=0)] = 2e-3,
    weight_decay: Annotated[float, typer.Option(min=0, help="AdamW decay of conv weights")] = 0.05,
    input_size: Annotated[int, typer.Option(min=64, max=1280)] = 320,
    mosaic: Annotated[
        float, typer.Option(min=0, max=1, help="share of frames tiled from four frames")
    ] = 0.5,
    night_oversample: Annotated[
        int, typer.Option(min=1, help="times each training night frame is drawn per epoch")
    ] = 6,
    truck_weight: Annotated[
        float, typer.Option(min=0, help="weight of truck centres in the heatmap loss (cars: 1)")
    ] = 1.0,
    crop_min: Annotated[
        float,
        typer.Option(min=0.1, max=1, help="smallest zoomed crop, as a share of the frame's side"),
    ] = 0.55,
    paste: Annotated[
        float,
        typer.Option(
            min=0, max=1, help="share of frames given trucks/buses pasted from their sequence"
        ),
    ] = 0.0,
    seed: int = 0,
    workers: Annotated[int, typer.Option(min=0)] = 1,
    device: str = "auto",
    amp: Annotated[
        bool | None,
        typer.Option(
            "--amp/--no-amp",
            help="bf16 mixed precision (default: on where the device runs bf16 natively: CUDA, "
            "or a CPU with AVX-512 BF16 or AMX; emulated bf16 is many times slower than fp32)",
        ),
    ] = None,
    ema_decay: Annotated[
        float, typer.Option(min=0, max=0.99999, help="weight average decay; 0 turns it off")
    ] = 0.999,
    resume: Annotated[Path | None, typer.Option(help="continue from this checkpoint")] = None,
    init: Annotated[Path | None, typer.Option(help="fine-tune from these weights")] = None,
    test_only: Annotated[bool, typer.Option("--test-only", help="only evaluate")] = False,
    limit: Annotated[
        int | None, typer.Option(min=1, help="use the first N training frames")
    ] = None,
    label_fixes: LabelFixesOpt = None,
    label_fixes_as: Annotated[
        FixesAs,
        typer.Option(
            help="class: a fixed box gets the fix's class; ambiguous: it is taught as neither "
            "truck nor car (for vehicles the sequences label differently)"
        ),
    ] = FixesAs.CLASS,
    ignore_boxes: Annotated[
        Path | None,
        typer.Option(
            help="CSV (label_file,x0,y0,x1,y1) of vehicles the training labels leave out: taught "
            "as no class and not as road"
        ),
    ] = None,
) -> None:
    """Train the detector from scratch (time split: validation = siang + late night)."""
    from truckcount.detector.train import TrainArgs
    from truckcount.detector.train import run as train_run

    if label_fixes_as is FixesAs.AMBIGUOUS and label_fixes is None:
        raise typer.BadParameter("needs --label-fixes", param_hint="--label-fixes-as")
    args = TrainArgs(
        data=str(data),
        output=str(output),
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        mosaic_p=mosaic,
        night_oversample=night_oversample,
        truck_weight=truck_weight,
        paste_p=paste,
        crop_min=crop_min,
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
        label_fixes=str(label_fixes) if label_fixes else None,
        label_fixes_as=label_fixes_as.value,
        ignore_boxes=str(ignore_boxes) if ignore_boxes else None,
    )
    report = guard(lambda: train_run(args))
    typer.echo(json.dumps(report.get("all", {}), indent=None))


def export_weights(
    checkpoint: Annotated[Path, typer.Argument(help="training checkpoint")],
    out: Annotated[Path, typer.Argument(help="slim weights file to write")],
) -> None:
    """Write the slim file that ships with the package."""
    from truckcount.detector.weights import export_weights as export

    version = guard(lambda: export(checkpoint, out))
    typer.echo(f"wrote {out} ({version})")


def _check_input_size(input_size: int | None) -> None:
    if input_size is not None and input_size % 32:
        raise typer.BadParameter(f"{input_size} is not a multiple of 32", param_hint="--input-size")


def export_onnx(
    out: Annotated[Path, typer.Argument(help=".onnx file to write")],
    weights: Annotated[Path | None, typer.Option(help="checkpoint (default: shipped)")] = None,
    int8: Annotated[
        Path | None,
        typer.Option(help="also write OUT with .int8.onnx, calibrated on this labelled folder"),
    ] = None,
    input_size: Annotated[
        int | None,
        typer.Option(min=64, max=1280, help="square input, a multiple of 32 (default: as trained)"),
    ] = None,
) -> None:
    """Export the detector network to ONNX (dynamic batch) for ``detector.runtime: onnx``."""
    from truckcount.config import DetectorConfig
    from truckcount.detector import onnx_runtime
    from truckcount.detector.infer import load_model

    _check_input_size(input_size)

    def go() -> None:
        import torch

        model, version = load_model(weights or DetectorConfig().weights, torch.device("cpu"))
        size = input_size or model.cfg.input_size
        onnx_runtime.export_onnx(model, version, out, size)
        typer.echo(f"wrote {out} ({version}, {size}x{size} input)")
        if int8 is not None:
            images = onnx_runtime.calibration_images(int8, size)
            q = out.with_suffix(".int8.onnx")
            onnx_runtime.quantize_int8(out, q, images)
            typer.echo(f"wrote {q} ({version}+int8, calibrated on {len(images)} frames)")

    guard(go)


def eval_detect(
    data: Annotated[Path, typer.Argument(help="YOLO-format folder with images/ and labels/")],
    weights: Annotated[
        Path | None,
        typer.Option(help="checkpoint, or .onnx file for ONNX Runtime (default: shipped)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    threshold: Annotated[
        float | None, typer.Option(min=0, max=1, help="score threshold for P/R")
    ] = None,
    split: Annotated[str, typer.Option(help="all, or the time split's val / train frames")] = "all",
    label_fixes: LabelFixesOpt = None,
    input_size: Annotated[
        int | None,
        typer.Option(
            min=64, max=1280, help="square input side, a multiple of 32 (default: as trained)"
        ),
    ] = None,
    flip: Annotated[
        bool, typer.Option(help="average with the mirrored image (as detector.flip)")
    ] = False,
) -> None:
    """COCO-style AP50 / AP50-95 per class, per sequence and day/night, and P/R at threshold."""
    from truckcount.detector.report import evaluate_folder, format_report

    _check_input_size(input_size)

    def go() -> dict[str, Any]:
        return evaluate_folder(data, weights, threshold, split, label_fixes, input_size, flip)

    report = guard(go)
    typer.echo(json.dumps(report, indent=2) if as_json else format_report(report))


def train_presence(
    data: Annotated[Path, typer.Argument(help="YOLO-format dataset folder (images/, labels/)")],
    output: Annotated[Path, typer.Option(help="folder for checkpoints")] = Path("runs/presence"),
    epochs: Annotated[int, typer.Option(min=1)] = 12,
    seed: int = 0,
    label_fixes: LabelFixesOpt = None,
) -> None:
    """Train the truck-presence classifier of the cascade (same time split as the detector)."""
    from truckcount.detector.presence_train import PresenceTrainArgs, run

    args = PresenceTrainArgs(
        data=str(data),
        output=str(output),
        epochs=epochs,
        seed=seed,
        label_fixes=str(label_fixes) if label_fixes else None,
    )
    report = guard(lambda: run(args))
    typer.echo(json.dumps(report, indent=None))


def train_classifier(
    data: Annotated[Path, typer.Argument(help="YOLO-format dataset folder (images/, labels/)")],
    output: Annotated[Path, typer.Option(help="folder for checkpoints and log")] = Path(
        "runs/classifier"
    ),
    epochs: Annotated[int, typer.Option(min=1)] = 8,
    draws: Annotated[int, typer.Option(min=1, help="crops drawn per epoch")] = 24_000,
    night_oversample: Annotated[
        int, typer.Option(min=1, help="times a night box is drawn as often as a day box")
    ] = 3,
    class_balance: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="a box is drawn with weight 1 / (its class's box count) to this power: "
            "1 draws every class equally often, 0 as labelled",
        ),
    ] = 1.0,
    input_size: Annotated[int, typer.Option(min=16, max=512, help="crop side in pixels")] = 64,
    seed: int = 0,
    device: str = "auto",
    resume: Annotated[Path | None, typer.Option(help="continue from this checkpoint")] = None,
    label_fixes: LabelFixesOpt = None,
) -> None:
    """Train the vehicle-class classifier the counter asks about each counted track's crops."""
    from truckcount.detector.crop_train import CropTrainArgs, run

    args = CropTrainArgs(
        data=str(data),
        output=str(output),
        epochs=epochs,
        draws_per_epoch=draws,
        night_oversample=night_oversample,
        class_balance=class_balance,
        input_size=input_size,
        seed=seed,
        device=device,
        label_fixes=str(label_fixes) if label_fixes else None,
    )
    report = guard(lambda: run(args, resume))
    typer.echo(json.dumps(report, indent=None))


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    """Add these commands to the ``truckcount`` application."""
    app.command()(train)
    app.command("train-presence")(train_presence)
    app.command("train-classifier")(train_classifier)
    app.command("export-weights")(export_weights)
    app.command("export-onnx")(export_onnx)
    eval_app.command("detect")(eval_detect)
