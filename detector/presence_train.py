"""``truckcount train-presence``: train and evaluate the truck-presence classifier.

Same data and time split as the detector (``detector/data.py``); light augmentation (flip, colour,
night-like darkening) from ``detector/augment.py``; Adam with weight decay; a checkpoint every
epoch; the epoch with the best validation F1 is kept.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torchmetrics.classification import BinaryAUROC, BinaryF1Score, BinaryPrecision, BinaryRecall

from truckcount.detector import data as ds
from truckcount.detector.augment import colour_jitter, darken, to_tensor
from truckcount.detector.label_fixes import read_optional
from truckcount.detector.presence import PresenceConfig, PresenceNet, cell_targets
from truckcount.detector.weights import pick_device, save_checkpoint
from truckcount.types import CLASSES

log = logging.getLogger(__name__)
Arrays = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class PresenceTrainArgs:
    """Everything that decides a presence-classifier run; saved in its checkpoint."""

    data: str
    output: str = "runs/presence"
    epochs: int = 12
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threshold: float = 0.5
    label_fixes: str | None = None  # class corrections applied to the labels (label_fixes.py)


def _augmented(img: np.ndarray, target: np.ndarray, rng: np.random.Generator, grid: int) -> Arrays:
    if rng.random() < 0.5:
        img = np.ascontiguousarray(img[:, ::-1])
        target = target.reshape(grid, grid)[:, ::-1].reshape(-1)
    if rng.random() < 0.8:
        img = colour_jitter(img, rng)
    if rng.random() < 0.25:
        img = darken(img, rng)
    return to_tensor([img])[0], torch.as_tensor(target.copy())


def _tensors(samples: list[ds.Sample], cfg: PresenceConfig) -> tuple[list[np.ndarray], np.ndarray]:
    images = ds.cache_images(samples, cfg.input_size)
    return images, np.stack([cell_targets(s, cfg.grid) for s in samples])


def train_epoch(
    net: PresenceNet,
    data: tuple[list[np.ndarray], np.ndarray],
    opt: torch.optim.Optimizer,
    rng: np.random.Generator,
    batch_size: int,
    device: torch.device,
) -> float:
    """One pass over shuffled training images; returns the mean loss."""
    images, targets = data
    net.train()
    loss_fn, total, order = nn.BCEWithLogitsLoss(), 0.0, rng.permutation(len(images))
    for i in range(0, len(order), batch_size):
        pairs = [
            _augmented(images[j], targets[j], rng, net.cfg.grid) for j in order[i : i + batch_size]
        ]
        x = torch.stack([p[0] for p in pairs]).to(device)
        y = torch.stack([p[1] for p in pairs]).to(device)
        loss = loss_fn(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item() * len(pairs)
    return total / max(len(order), 1)


@torch.inference_mode()
def evaluate(
    net: PresenceNet,
    data: tuple[list[np.ndarray], np.ndarray],
    device: torch.device,
    threshold: float,
) -> dict[str, Any]:
    """Per-cell and per-frame ("any cell") accuracy figures on held-out images."""
    images, targets = data
    net.eval()
    probs = torch.cat(
        [
            torch.sigmoid(net(to_tensor(images[i : i + 64]).to(device))).cpu()
            for i in range(0, len(images), 64)
        ]
    )
    y = torch.as_tensor(targets).int()
    report: dict[str, Any] = {}
    for name, p, t in (
        ("cell", probs.flatten(), y.flatten()),
        ("frame", probs.max(1).values, y.max(1).values),
    ):
        pred = (p >= threshold).int()
        report[name] = {
            "accuracy": round(float((pred == t).float().mean()), 4),
            "precision": round(float(BinaryPrecision()(pred, t)), 4),
            "recall": round(float(BinaryRecall()(pred, t)), 4),
            "f1": round(float(BinaryF1Score()(pred, t)), 4),
            "auroc": round(float(BinaryAUROC()(p, t)), 4) if t.min() != t.max() else None,
            "positives": int(t.sum()),
            "total": int(t.numel()),
        }
    return report


def run(args: PresenceTrainArgs) -> dict[str, Any]:
    """Train, checkpoint every epoch, keep the best by validation cell F1; return its report."""
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    device, cfg = pick_device("auto"), PresenceConfig()
    train, val = ds.split(ds.load_samples(Path(args.data), fixes=read_optional(args.label_fixes)))
    train_data, val_data = _tensors(train, cfg), _tensors(val, cfg)
    net = PresenceNet(cfg).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    best: dict[str, Any] = {"cell": {"f1": -1.0}}
    for epoch in range(args.epochs):
        t0 = time.monotonic()
        loss = train_epoch(net, train_data, opt, rng, args.batch_size, device)
        sched.step()
        report = evaluate(net, val_data, device, args.threshold)
        log.info(
            "epoch %d loss %.4f val %s (%.0f s)",
            epoch,
            loss,
            json.dumps(report),
            time.monotonic() - t0,
        )
        state = {
            "kind": "presence",
            "model": net.state_dict(),
            "model_config": cfg.to_dict(),
            "classes": [c.value for c in CLASSES],
            "args": asdict(args),
            "epoch": epoch,
            "metrics": {"val": report, "loss": loss},
        }
        save_checkpoint(state, out / "checkpoint.pt")
        if report["cell"]["f1"] > best["cell"]["f1"]:
            best = report
            save_checkpoint(state, out / "best.pt")
    return best
