"""``truckcount train``: arguments -> data -> model -> loop, with a checkpoint every epoch.

A checkpoint is a plain dict ``{model, optimizer, lr_scheduler, epoch, args, classes, metrics,
model_config}`` loaded with ``weights_only=True``. ``--resume`` continues a run, ``--init``
fine-tunes from another model's weights, ``--test-only`` evaluates and exits.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader
from tqdm import tqdm

from truckcount.detector import data as ds
from truckcount.detector.augment import AugmentConfig, DetectionDataset
from truckcount.detector.engine import predict, train_one_epoch
from truckcount.detector.evaluate import evaluate_predictions
from truckcount.detector.ignore_boxes import add_ignored, read_ignore_boxes
from truckcount.detector.label_fixes import read_optional
from truckcount.detector.model import ModelConfig, TruckNet
from truckcount.detector.paste import InstanceBank
from truckcount.detector.weights import (
    load_checkpoint,
    pick_device,
    resolve_amp,
    save_checkpoint,
)
from truckcount.types import CLASSES, VehicleClass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainArgs:
    """Everything that decides a training run; saved in each checkpoint."""

    data: str
    output: str = "runs/train"
    epochs: int = 12
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    input_size: int = 320
    cache_size: int = 480
    night_oversample: int = 6  # times each training night frame is drawn per epoch
    mosaic_p: float = 0.5  # share of training frames tiled from four (augment.mosaic)
    crop_min: float = 0.55  # smallest zoomed-crop side, as a share of the frame (augment)
    paste_p: float = 0.0  # share of training frames given pasted trucks/buses (detector.paste)
    truck_weight: float = 1.0  # weight of truck centres in the heatmap loss (cars: 1)
    workers: int = 1
    seed: int = 0
    amp: bool | None = None  # bf16 autocast; None: where the device runs it natively
    ema_decay: float = 0.999  # 0 turns the weight average off
    device: str = "auto"
    resume: str | None = None
    init: str | None = None
    test_only: bool = False
    eval_threshold: float = 0.3
    limit: int | None = None  # use only the first N training frames (smoke tests)
    label_fixes: str | None = None  # class corrections applied to the labels (label_fixes.py)
    # "class": a fixed box gets the class the fix names; "ambiguous": it is taught as neither
    # truck nor car (data.mark_ambiguous), for vehicles the sequences label differently
    label_fixes_as: Literal["class", "ambiguous"] = "class"
    # CSV of vehicles the labels leave out (detector.ignore_boxes): taught as no class and no road
    ignore_boxes: str | None = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _load_data(args: TrainArgs) -> tuple[DetectionDataset, list[ds.Sample], list[Any]]:
    samples = ds.load_samples(Path(args.data), fixes=read_optional(args.label_fixes))
    ambiguous: tuple[int, ...] = ()
    if args.label_fixes and args.label_fixes_as == "ambiguous":
        samples = ds.mark_ambiguous(ds.load_samples(Path(args.data)), samples)
        ambiguous = (CLASSES.index(VehicleClass.TRUCK), CLASSES.index(VehicleClass.CAR))
        marked = sum(int((s.classes == ds.AMBIGUOUS).sum()) for s in samples)
        log.info("%d fixed boxes taught as neither truck nor car", marked)
    train, val = ds.split(samples)
    if args.ignore_boxes:
        train = add_ignored(train, read_ignore_boxes(Path(args.ignore_boxes)), args.ignore_boxes)
        ambiguous = tuple(range(len(CLASSES)))
        marked = sum(int((s.classes == ds.AMBIGUOUS).sum()) for s in train)
        log.info("%d boxes taught as no class (--label-fixes-as ambiguous, --ignore-boxes)", marked)
    if args.limit is not None:
        train, val = train[: args.limit], val[: max(args.limit // 2, 1)]
    if not train or not val:
        raise ds.LabelError(f"{args.data}: the time split left {len(train)} train / {len(val)} val")
    night = [s for s in train if s.night]
    train = train + night * (args.night_oversample - 1)
    log.info(
        "train %d frames (%d night, x%d), val %d",
        len(train),
        len(night),
        args.night_oversample,
        len(val),
    )
    with tqdm(total=len(train) + len(val), desc="caching images", leave=False) as bar:
        train_imgs = ds.cache_images(train, args.cache_size, bar.update)
        val_imgs = ds.cache_images(val, args.input_size, bar.update)
    rare = [CLASSES.index(VehicleClass.TRUCK), CLASSES.index(VehicleClass.BUS)]
    bank = InstanceBank(train, rare) if args.paste_p > 0 else None
    if bank is not None:
        log.info("paste bank: %d isolated trucks and buses", len(bank))
    dataset = DetectionDataset(
        train,
        train_imgs,
        args.input_size,
        len(CLASSES),
        AugmentConfig(
            crop_scale=(args.crop_min, 1.0), mosaic_p=args.mosaic_p, paste_p=args.paste_p
        ),
        seed=args.seed,
        bank=bank,
        ambiguous=ambiguous,
    )
    return dataset, val, val_imgs


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """LR factor: linear warm-up, then cosine decay to 1 % over ``total`` steps."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))


def make_ema(model: TruckNet, decay: float) -> AveragedModel:
    """Exponential moving average of the weights (and BN statistics), warmed up so early steps
    are not dominated by the random initialisation; it is what validation and export use."""

    def ema_avg(avg: Tensor, current: Tensor, n: Tensor | int) -> Tensor:
        d = min(decay, (1 + int(n)) / (10 + int(n)))
        return avg * d + current * (1 - d)

    return AveragedModel(model, avg_fn=ema_avg, use_buffers=True)


def _optimizer(
    model: TruckNet, args: TrainArgs, steps: int
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups: list[dict[str, Any]] = [
        {"params": decay, "weight_decay": args.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=args.lr)
    warmup = min(300, max(steps // 20, 1))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: warmup_cosine(i, steps, warmup))
    return opt, sched


def validate(
    model: TruckNet, val: list[ds.Sample], images: list[Any], device: torch.device, args: TrainArgs
) -> dict[str, Any]:
    """Predict on the cached validation images and compute the detection report."""
    preds = predict(model, images, device, batch_size=16, amp=bool(args.amp), score_threshold=0.01)
    return evaluate_predictions(preds, val, args.input_size, args.eval_threshold)


def _restore(args: TrainArgs) -> tuple[TrainArgs, dict[str, Any] | None]:
    """Load the --resume / --init checkpoint; a resumed run keeps its saved settings, and the
    command decides only where it ends and where it writes."""
    source = args.resume or args.init
    if source is None:
        return args, None
    state = load_checkpoint(Path(source))
    if args.resume:
        args = replace(
            TrainArgs(**state["args"]),
            resume=args.resume,
            test_only=args.test_only,
            epochs=args.epochs,
            output=args.output,
            workers=args.workers,
            amp=args.amp,  # a property of the machine, not of the recipe
        )
    return args, state


def _epoch_checkpoint(
    model: TruckNet,
    ema: AveragedModel | None,
    opt: torch.optim.Optimizer,
    sched: Any,
    args: TrainArgs,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """``model`` holds the weights to deploy (the average when there is one); ``train_model`` the
    raw weights a resumed run continues from."""
    deployed = ema.module if ema is not None else model
    return {
        "model": deployed.state_dict(),
        "train_model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "lr_scheduler": sched.state_dict(),
        "args": asdict(args),
        "classes": [c.value for c in CLASSES],
        "model_config": model.cfg.to_dict(),
        **extra,
    }


def _loader(dataset: DetectionDataset, args: TrainArgs) -> DataLoader[Any]:
    return DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
        pin_memory=pick_device(args.device).type == "cuda",  # lets the copy to the GPU overlap
        generator=torch.Generator().manual_seed(args.seed),
    )


def run(args: TrainArgs) -> dict[str, Any]:
    """Train (or only evaluate) and return the last validation report."""
    seed_everything(args.seed)
    device = pick_device(args.device)
    args, state = _restore(args)
    args = replace(args, amp=resolve_amp(args.amp, device))
    cfg = ModelConfig.from_dict(state["model_config"]) if state else ModelConfig()
    model = TruckNet(replace(cfg, input_size=args.input_size)).to(device)
    model = model.to(memory_format=torch.channels_last)
    if state is not None:
        model.load_state_dict(
            state.get("train_model", state["model"]) if args.resume else state["model"]
        )
    ema = make_ema(model, args.ema_decay) if args.ema_decay > 0 else None
    if ema is not None and state is not None and args.resume:
        ema.module.load_state_dict(state["model"])
        ema.n_averaged.fill_(int(state.get("ema_updates", 1000)))
    dataset, val, val_imgs = _load_data(args)
    out = Path(args.output)  # made once the data loaded: a bad label leaves nothing behind
    out.mkdir(parents=True, exist_ok=True)
    report = validate(ema.module if ema else model, val, val_imgs, device, args)
    if args.test_only:
        log.info("validation: %s", json.dumps(report["all"]))
        return report
    loader = _loader(dataset, args)
    opt, sched = _optimizer(model, args, args.epochs * len(loader))
    start_epoch, best = 0, -1.0
    if state is not None and args.resume:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["lr_scheduler"])
        start_epoch, best = int(state["epoch"]) + 1, float(state.get("best", -1.0))
    class_weights = [args.truck_weight if c is VehicleClass.TRUCK else 1.0 for c in CLASSES]
    for epoch in range(start_epoch, args.epochs):
        t0 = time.monotonic()
        dataset.set_epoch(epoch)
        losses = train_one_epoch(
            model,
            loader,
            opt,
            sched,
            device,
            amp=bool(args.amp),
            epoch=epoch,
            ema=ema,
            class_weights=class_weights,
        )
        report = validate(ema.module if ema else model, val, val_imgs, device, args)
        truck = float(report["all"]["ap50"].get("truck", 0.0))
        minutes = (time.monotonic() - t0) / 60
        metrics = {"epoch": epoch, "loss": losses, "val": report, "minutes": minutes}
        log.info(
            "epoch %d loss %.3f truck AP50 %.3f (%.1f min)", epoch, losses["total"], truck, minutes
        )
        best = max(best, truck)
        extra = {"epoch": epoch, "metrics": metrics, "best": best}
        if ema is not None:
            extra["ema_updates"] = int(ema.n_averaged.item())
        ckpt = _epoch_checkpoint(model, ema, opt, sched, args, extra)
        save_checkpoint(ckpt, out / "checkpoint.pt")
        if truck >= best:
            save_checkpoint(ckpt, out / "best.pt")
        with (out / "log.jsonl").open("a") as f:
            f.write(json.dumps(metrics) + "\n")
    return report
