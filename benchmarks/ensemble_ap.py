"""Detection AP of several trained models averaged together: a ceiling for one network's recipe.

Runs every checkpoint on the same frames and averages their maps (centre probabilities, log
sizes, offsets) before decoding, then reports AP as ``truckcount eval detect`` does. An average
of independently trained models is usually better than any one of them, so its AP bounds what
more training of that network on the same labels can be expected to reach. It costs one
network pass per model, so it is a measurement, not a deployable setting.

    python benchmarks/ensemble_ap.py ../shared/data/km39-cctv --weights A.pt --weights B.pt \
        [--split val] [--flip]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
from torch import Tensor, nn

from truckcount.detector.data import is_validation, load_samples
from truckcount.detector.infer import load_model
from truckcount.detector.model import TruckNet
from truckcount.detector.report import evaluate_network, format_report
from truckcount.detector.tta import FlipAverage
from truckcount.detector.weights import pick_device

log = logging.getLogger("ensemble_ap")


class MapAverage(nn.Module):
    """The mean of several networks' output maps; the heatmap is averaged as probabilities."""

    def __init__(self, nets: list[TruckNet]) -> None:
        super().__init__()
        sizes = {n.cfg.input_size for n in nets}
        if len(sizes) != 1:
            raise ValueError(f"models trained at different input sizes {sorted(sizes)}")
        self.nets = nn.ModuleList(nets)
        self.cfg = nets[0].cfg

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        outs = [net(x) for net in self.nets]
        prob = torch.stack([torch.sigmoid(o["heatmap"].float()) for o in outs]).mean(0)
        prob = prob.clamp(1e-6, 1 - 1e-6)
        mean = {k: torch.stack([o[k].float() for o in outs]).mean(0) for k in ("size", "offset")}
        return {"heatmap": torch.logit(prob), **mean}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--weights", type=Path, action="append", required=True)
    parser.add_argument("--split", choices=("all", "val", "train"), default="val")
    parser.add_argument("--flip", action="store_true", help="also average each frame's mirror")
    parser.add_argument("--threshold", type=float, default=0.3, help="score for P/R")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = pick_device("auto")
    loaded = [load_model(w, device) for w in args.weights]
    net: nn.Module = MapAverage([m for m, _ in loaded])
    if args.flip:
        net = FlipAverage(net)
    samples = load_samples(args.data)
    if args.split != "all":
        samples = [s for s in samples if is_validation(s) == (args.split == "val")]
    report = evaluate_network(net, loaded[0][0].cfg.input_size, samples, device, args.threshold)
    version = " + ".join(v for _, v in loaded) + (" (+flip)" if args.flip else "")
    log.info("%s", format_report({"model_version": version, **report}))


if __name__ == "__main__":
    main()
