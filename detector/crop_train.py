"""``truckcount train-classifier``: train and evaluate the vehicle-class (crop) classifier.

Crops come from the labelled boxes of the detector's data, on the same time split
(``detector/data.py``). Each training crop is cut from the full image with its box shifted and
resized a little (the counter crops detector boxes, which are never exact), then flipped,
colour-jittered, blurred or darkened like night. Draws are balanced: a box is drawn with weight
1 / (its class's box count) ** ``class_balance`` (1: every class equally often), night boxes
``night_oversample`` times as often. AdamW with a one-cycle schedule, bf16 autocast where the
device runs it natively, a checkpoint every epoch (``--resume`` continues one), and the epoch
with the best validation truck F1 is kept as ``best.pt``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torchmetrics.functional.classification import (
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)
from tqdm import tqdm

from truckcount.detector import data as ds
from truckcount.detector.augment import colour_jitter, darken, to_tensor
from truckcount.detector.crop_classifier import KIND, CropConfig, CropNet, crop_box
from truckcount.detector.label_fixes import read_optional
from truckcount.detector.weights import (
    load_checkpoint,
    pick_device,
    resolve_amp,
    save_checkpoint,
)
from truckcount.types import CLASSES

log = logging.getLogger(__name__)
MIN_SIDE_PX = 8  # boxes smaller than this in the source image are too small to classify


@dataclass(frozen=True)
class CropTrainArgs:
    """Everything that decides a classifier run; saved in its checkpoint."""

    data: str
    output: str = "runs/classifier"
    epochs: int = 8
    draws_per_epoch: int = 24_000
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    night_oversample: int = 3
    class_balance: float = 1.0
    label_fixes: str | None = None  # class corrections applied to the labels (label_fixes.py)
    input_size: int = 64
    seed: int = 0
    amp: bool | None = None  # bf16 autocast; None: where the device runs it natively
    device: str = "auto"


@dataclass(frozen=True)
class CropSet:
    """Labelled boxes of some frames: (image index, box in pixels, class, night) per box."""

    images: list[npt.NDArray[np.uint8]]
    owner: npt.NDArray[np.int64]
    boxes: npt.NDArray[np.float32]
    classes: npt.NDArray[np.int64]
    night: npt.NDArray[np.bool_]

    @classmethod
    def of(cls, samples: list[ds.Sample]) -> CropSet:
        images = [ds.read_image(s.image_path) for s in tqdm(samples, "reading", leave=False)]
        owner, boxes, classes, night = [], [], [], []
        for i, (s, img) in enumerate(zip(samples, images, strict=True)):
            h, w = img.shape[:2]
            px = s.boxes * np.array([w, h, w, h], np.float32)
            keep = np.minimum(px[:, 2] - px[:, 0], px[:, 3] - px[:, 1]) >= MIN_SIDE_PX
            owner += [i] * int(keep.sum())
            boxes.append(px[keep])
            classes.append(s.classes[keep])
            night += [s.night] * int(keep.sum())
        return cls(
            images,
            np.asarray(owner, np.int64),
            np.concatenate(boxes).astype(np.float32),
            np.concatenate(classes).astype(np.int64),
            np.asarray(night, bool),
        )

    def draw_weights(self, night_oversample: int, balance: float) -> npt.NDArray[np.float64]:
        """Each box's draw probability: 1 / (class box count) ** balance, night boxes
        ``night_oversample`` times as likely."""
        counts = np.bincount(self.classes, minlength=len(CLASSES)).clip(min=1).astype(np.float64)
        w = counts[self.classes] ** -balance * np.where(self.night, night_oversample, 1.0)
        return np.asarray(w / w.sum(), np.float64)


def augmented_crop(
    crops: CropSet, k: int, cfg: CropConfig, rng: np.random.Generator
) -> npt.NDArray[np.uint8]:
    """Box ``k`` cut with a detector-like error, then flip, colour, blur and night changes."""
    jitter = np.array([rng.normal(0, 0.06), rng.normal(0, 0.06), *rng.normal(0, 0.1, 2)])
    img = crop_box(crops.images[crops.owner[k]], crops.boxes[k], cfg, jitter)
    if rng.random() < 0.5:
        img = np.ascontiguousarray(img[:, ::-1])
    if rng.random() < 0.8:
        img = colour_jitter(img, rng)
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (3, 3), rng.uniform(0.3, 1.2))
    if not crops.night[k] and rng.random() < 0.15:
        img = darken(img, rng)
    return img


def train_epoch(
    net: CropNet,
    crops: CropSet,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    args: CropTrainArgs,
    rng: np.random.Generator,
) -> float:
    """One epoch of ``draws_per_epoch`` balanced draws; returns the mean loss."""
    net.train()
    device = next(net.parameters()).device
    picks = rng.choice(
        len(crops.classes),
        args.draws_per_epoch,
        p=crops.draw_weights(args.night_oversample, args.class_balance),
    )
    total, steps = 0.0, 0
    for i in tqdm(range(0, len(picks), args.batch_size), "training", leave=False):
        batch = picks[i : i + args.batch_size]
        x = to_tensor([augmented_crop(crops, int(k), net.cfg, rng) for k in batch]).to(device)
        y = torch.as_tensor(crops.classes[batch], device=device)
        with torch.autocast(device.type, torch.bfloat16, enabled=bool(args.amp)):
            logits = net(x.contiguous(memory_format=torch.channels_last))
        loss = nn.functional.cross_entropy(logits.float(), y, label_smoothing=0.05)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total, steps = total + loss.item(), steps + 1
    return total / max(steps, 1)


@torch.inference_mode()
def evaluate(net: CropNet, crops: CropSet) -> dict[str, Any]:
    """Per-class precision, recall and F1 on the labelled boxes, all / day / night."""
    net.eval()
    device = next(net.parameters()).device
    cut = [
        crop_box(crops.images[o], b, net.cfg) for o, b in zip(crops.owner, crops.boxes, strict=True)
    ]
    preds = torch.cat(
        [
            net(to_tensor(cut[i : i + 256]).to(device)).argmax(1).cpu()
            for i in range(0, len(cut), 256)
        ]
    )
    truth = torch.as_tensor(crops.classes)
    report: dict[str, Any] = {}
    for name, mask in (
        ("all", np.ones_like(crops.night)),
        ("day", ~crops.night),
        ("night", crops.night),
    ):
        m = torch.as_tensor(mask)
        if not bool(m.any()):
            continue
        p, t, n = preds[m], truth[m], len(CLASSES)
        figures = {
            "precision": multiclass_precision(p, t, n, average=None),
            "recall": multiclass_recall(p, t, n, average=None),
            "f1": multiclass_f1_score(p, t, n, average=None),
        }
        report[name] = {
            c.value: {k: round(float(v[i]), 4) for k, v in figures.items()}
            | {"boxes": int((t == i).sum())}
            for i, c in enumerate(CLASSES)
        }
    return report


def run(args: CropTrainArgs, resume: Path | None = None) -> dict[str, Any]:
    """Train, checkpoint every epoch, keep the best by validation truck F1; return its report.

    ``resume`` continues the run of that checkpoint with the arguments saved in it.
    """
    state = load_checkpoint(resume) if resume is not None else None
    if state is not None:
        # Runs saved before ``class_balance`` existed drew classes by the square root.
        saved = CropTrainArgs(**{"class_balance": 0.5, **state["args"]})
        args = replace(saved, amp=args.amp)  # precision follows the machine it resumes on
        log.info("resuming %s after epoch %d", resume, state["epoch"])
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    device, cfg = pick_device(args.device), CropConfig(input_size=args.input_size)
    args = replace(args, amp=resolve_amp(args.amp, device))
    train, val = ds.split(ds.load_samples(Path(args.data), fixes=read_optional(args.label_fixes)))
    train_set, val_set = CropSet.of(train), CropSet.of(val)
    log.info("crops: %d training, %d validation", len(train_set.classes), len(val_set.classes))
    net = CropNet(cfg).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps = args.epochs * -(-args.draws_per_epoch // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=steps, pct_start=0.1)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    first, best = 0, -1.0
    if state is not None:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        rng.bit_generator.state = json.loads(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        first, best = int(state["epoch"]) + 1, float(state["best_f1"])
    for epoch in range(first, args.epochs):
        best = _epoch(epoch, (net, opt, sched), (train_set, val_set), args, rng, best)
    return dict(load_checkpoint(out / "best.pt")["metrics"])


def _epoch(
    epoch: int,
    learner: tuple[CropNet, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler],
    sets: tuple[CropSet, CropSet],
    args: CropTrainArgs,
    rng: np.random.Generator,
    best: float,
) -> float:
    """Train and evaluate one epoch, write its checkpoints and log line; return the best F1."""
    (net, opt, sched), out, t0 = learner, Path(args.output), time.monotonic()
    loss = train_epoch(net, sets[0], opt, sched, args, rng)
    report = evaluate(net, sets[1])
    f1 = report["all"]["truck"]["f1"]
    log.info(
        "epoch %d loss %.4f val %s (%.0f s)", epoch, loss, json.dumps(report), time.monotonic() - t0
    )
    with (out / "log.jsonl").open("a") as f:
        f.write(json.dumps({"epoch": epoch, "loss": loss, "val": report}) + "\n")
    state = {
        "kind": KIND,
        "model": net.state_dict(),
        "model_config": net.cfg.to_dict(),
        "classes": [c.value for c in CLASSES],
        "args": asdict(args),
        "epoch": epoch,
        "metrics": {"val": report, "loss": loss},
    }
    if f1 > best:
        best = f1
        save_checkpoint(state, out / "best.pt")
    extra: dict[str, Any] = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}
    rng_state = json.dumps(rng.bit_generator.state)
    extra |= {"rng": rng_state, "torch_rng": torch.get_rng_state(), "best_f1": best}
    save_checkpoint({**state, **extra}, out / "checkpoint.pt")
    return best
