"""Test-time mirroring: the network's outputs averaged over a frame and its mirror image.

``FlipAverage`` wraps either runtime's network (``TruckNet`` or ``OnnxNetwork``): it runs each
batch together with its left-right mirror (one forward pass of twice the batch), mirrors the
second half's maps back and averages them with the first half's, so decoding and NMS stay those
of a plain network. A vehicle and its mirror image are equally likely on a road camera, so the
average is a better estimate of both; it costs a second pass of the network (``detector.flip``).

Maps are on a grid of stride ``STRIDE``; an input whose width is a multiple of the stride mirrors
cell ``j`` onto cell ``W - 1 - j`` exactly. A centre at ``x = (j + o) * STRIDE`` in the mirror
is at ``(W - 1 - j + 1 - o) * STRIDE`` in the frame, so the x offset ``o`` becomes ``1 - o``;
heatmap logits, log sizes and y offsets average as they are.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class FlipAverage(nn.Module):
    """``net`` applied to a batch and its mirror, outputs averaged (``detector.flip``).

    Args:
        net: a module mapping a normalised (B, 3, S, S) batch to the ``heatmap``, ``size`` and
            ``offset`` maps, with a ``cfg`` (its ``ModelConfig``).
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.cfg: Any = net.cfg

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        n = x.shape[0]
        out = self.net(torch.cat([x, x.flip(3)]))
        plain = {k: v[:n] for k, v in out.items()}
        mirror = {k: v[n:].flip(3) for k, v in out.items()}
        offset = mirror["offset"].clone()
        offset[:, 0] = 1 - offset[:, 0]
        return {
            "heatmap": (plain["heatmap"] + mirror["heatmap"]) / 2,
            "size": (plain["size"] + mirror["size"]) / 2,
            "offset": (plain["offset"] + offset) / 2,
        }
