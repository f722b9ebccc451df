"""The truck-presence classifier: a small CNN saying, per cell of a coarse grid, whether a truck is
there. It is cheap next to the detector, so the cascade (``detector/cascade.py``) can ask it first.

Labels come from the detector's box labels: a cell is positive when the bottom-centre of a truck
box (the point the line counter uses) lies in it. The network is conv -> batch norm -> ReLU ->
max-pool blocks with Kaiming initialisation, average pooling down to the grid, dropout and one
linear layer shared by the cells (a 1x1 convolution) giving a logit per cell; it is trained with
Adam and weight decay on the same time split as the detector.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from truckcount.detector.augment import to_tensor
from truckcount.detector.data import Sample
from truckcount.detector.weights import CheckpointError, load_checkpoint
from truckcount.types import CLASSES, VehicleClass

TRUCK_ID = CLASSES.index(VehicleClass.TRUCK)


@dataclass(frozen=True)
class PresenceConfig:
    """Shape of the classifier: input side in pixels, grid cells per side, block widths."""

    input_size: int = 128
    grid: int = 4
    widths: tuple[int, ...] = (16, 32, 64, 96)
    dropout: float = 0.3

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "widths": list(self.widths)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PresenceConfig:
        return cls(**{**d, "widths": tuple(d["widths"])})


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class PresenceNet(nn.Module):
    """Image (B, 3, S, S) -> truck-presence logits (B, grid * grid), row-major cells."""

    def __init__(self, cfg: PresenceConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or PresenceConfig()
        chans = (3, *self.cfg.widths)
        self.features = nn.Sequential(*(_block(a, b) for a, b in itertools.pairwise(chans)))
        self.pool = nn.AdaptiveAvgPool2d(self.cfg.grid)
        self.head = nn.Sequential(nn.Dropout(self.cfg.dropout), nn.Conv2d(chans[-1], 1, 1))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.features(x))).flatten(1)


def cell_targets(sample: Sample, grid: int) -> npt.NDArray[np.float32]:
    """1 for each cell holding the bottom-centre of a truck box, else 0 (row-major, grid*grid)."""
    out = np.zeros((grid, grid), np.float32)
    trucks = sample.boxes[sample.classes == TRUCK_ID]
    for x0, _, x1, y1 in trucks:
        col = min(int((x0 + x1) / 2 * grid), grid - 1)
        row = min(int(y1 * grid), grid - 1)
        out[row, col] = 1.0
    return out.reshape(-1)


def cells_touching(region: tuple[float, float, float, float], grid: int) -> npt.NDArray[np.bool_]:
    """Mask of the grid cells that overlap ``region`` (normalised x0, y0, x1, y1)."""
    x0, y0, x1, y1 = region
    edges = np.arange(grid + 1) / grid
    cols = (edges[1:] > x0) & (edges[:-1] < x1)
    rows = (edges[1:] > y0) & (edges[:-1] < y1)
    return np.asarray((rows[:, None] & cols[None, :]).reshape(-1))


class PresenceClassifier:
    """The trained classifier: frames (BGR, any size) -> per-cell truck probabilities."""

    def __init__(self, path: Path, device: torch.device) -> None:
        state = load_checkpoint(path)
        if state.get("kind") != "presence":
            raise CheckpointError(f"{path} is not a truck-presence checkpoint")
        self.cfg = PresenceConfig.from_dict(state["model_config"])
        self.net = PresenceNet(self.cfg)
        self.net.load_state_dict(state["model"])
        self.net.to(device).eval()
        self.device = device

    @torch.inference_mode()
    def probabilities(self, images: list[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        """(N, grid * grid) probabilities for BGR images of any size."""
        s = self.cfg.input_size
        small = [cv2.resize(i, (s, s), interpolation=cv2.INTER_AREA) for i in images]
        logits = self.net(to_tensor(small).to(self.device))
        return np.asarray(torch.sigmoid(logits).float().cpu().numpy(), np.float32)
