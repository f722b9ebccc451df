"""What bf16 mixed precision does to a training step on this machine's CPU.

Times ``train_one_epoch`` (augmentation, forward, loss, backward, AdamW step) on the first
``--frames`` km39 training frames at the shipped recipe's batch and input size, once in fp32 and
once with bf16 autocast, in one process, and prints seconds per step and their ratio as one JSON
object, with whether the CPU has native bf16 (``detector.weights.native_bf16``), which is what
``truckcount train`` now decides ``--amp`` by when it is not given.

With ``--ignore-boxes F`` it also times the same steps, at the CPU's native precision, with the
boxes of an ignore file added to their frames (``truckcount train --ignore-boxes``), against
the same frames without them, in the same process.

    .venv/bin/python benchmarks/bench_train_precision.py ../shared/data/km39-cctv [--frames 96]
        [--ignore-boxes benchmarks/km39_unlabelled_training.csv]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from truckcount.detector import data as ds
from truckcount.detector.augment import AugmentConfig, DetectionDataset
from truckcount.detector.engine import train_one_epoch
from truckcount.detector.ignore_boxes import add_ignored, read_ignore_boxes
from truckcount.detector.model import ModelConfig, TruckNet
from truckcount.detector.weights import native_bf16
from truckcount.types import CLASSES


def seconds_per_step(dataset: DetectionDataset, batch_size: int, amp: bool) -> float:
    """One pass over ``dataset`` from a fresh model; the first step (warm-up) is not timed."""
    torch.manual_seed(0)
    model = TruckNet(ModelConfig()).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    device = torch.device("cpu")
    warm = DataLoader(torch.utils.data.Subset(dataset, range(batch_size)), batch_size=batch_size)
    train_one_epoch(model, warm, opt, sched, device, amp=amp, epoch=0)
    loader = DataLoader(dataset, batch_size=batch_size, drop_last=True)
    t0 = time.perf_counter()
    train_one_epoch(model, loader, opt, sched, device, amp=amp, epoch=0)
    return (time.perf_counter() - t0) / len(loader)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="the km39 folder (images/, labels/)")
    parser.add_argument("--frames", type=int, default=96, help="training frames timed")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--ignore-boxes", type=Path, help="also time steps with these boxes")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    train, _ = ds.split(ds.load_samples(args.data))
    train = train[: args.frames]
    size = ModelConfig().input_size
    images = ds.cache_images(train, 480)
    augment = AugmentConfig(crop_scale=(0.3, 1.0))
    dataset = DetectionDataset(train, images, size, len(CLASSES), augment, seed=0)
    fp32 = seconds_per_step(dataset, args.batch_size, amp=False)
    bf16 = seconds_per_step(dataset, args.batch_size, amp=True)
    report = {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": native_bf16(torch.device("cpu")),
        "torch_threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "input_size": size,
        "steps_timed": len(dataset) // args.batch_size,
        "fp32_s_per_step": round(fp32, 2),
        "bf16_s_per_step": round(bf16, 2),
        "bf16_over_fp32": round(bf16 / fp32, 2),
    }
    if args.ignore_boxes:
        boxes = read_ignore_boxes(args.ignore_boxes)
        marked = add_ignored(
            train, {k: v for k, v in boxes.items() if k in {s.image_path.stem for s in train}}
        )
        everything = tuple(range(len(CLASSES)))
        ignoring = DetectionDataset(
            marked, images, size, len(CLASSES), augment, seed=0, ambiguous=everything
        )
        native = native_bf16(torch.device("cpu"))
        plain = bf16 if native else fp32
        with_ignored = seconds_per_step(ignoring, args.batch_size, amp=native)
        report["ignore_boxes_added"] = sum(
            len(s.boxes) - len(t.boxes) for s, t in zip(marked, train, strict=True)
        )
        report["ignore_precision"] = "bf16" if native else "fp32"
        report["ignore_s_per_step"] = round(with_ignored, 2)
        report["ignore_over_plain"] = round(with_ignored / plain, 3)
    logging.getLogger("bench_train_precision").warning("%s", json.dumps(report))


if __name__ == "__main__":
    main()
