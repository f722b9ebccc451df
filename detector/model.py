"""The detector network: a compact CenterNet-style CNN built from torchvision parts.

Backbone: a convolutional stem and four stages of torchvision ResNet ``BasicBlock``s (strides 4
to 32).
Neck: torchvision's ``FeaturePyramidNetwork`` merges the stages top-down; the stride-4 map feeds the
heads. Heads: a per-class centre heatmap, box size (log width/height in output cells) and the
sub-cell offset of the centre. Decoding keeps heatmap peaks (3x3 max-pool) and then applies
torchvision's ``batched_nms``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock
from torchvision.ops import FeaturePyramidNetwork, batched_nms

STRIDE = 4
HEATMAP_PRIOR_BIAS = -2.19  # sigmoid(-2.19) ~= 0.1: the usual CenterNet start


@dataclass(frozen=True)
class ModelConfig:
    """Architecture hyper-parameters; stored in every checkpoint."""

    num_classes: int = 3
    input_size: int = 320
    widths: tuple[int, ...] = (24, 48, 96, 160, 256)
    blocks: tuple[int, ...] = (1, 2, 2, 2)
    neck_channels: int = 48
    stem_convs: int = 1  # 3x3 convolutions in the stem (the first has stride 2)
    shared_head: bool = True  # one 3x3 conv feeds all outputs, instead of one per head

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> ModelConfig:
        """Read a stored config; keys added later default to the layout of earlier models."""
        return cls(
            num_classes=int(d["num_classes"]),  # type: ignore[call-overload]
            input_size=int(d["input_size"]),  # type: ignore[call-overload]
            widths=tuple(d["widths"]),  # type: ignore[arg-type]
            blocks=tuple(d["blocks"]),  # type: ignore[arg-type]
            neck_channels=int(d["neck_channels"]),  # type: ignore[call-overload]
            stem_convs=int(d.get("stem_convs", 2)),  # type: ignore[call-overload]
            shared_head=bool(d.get("shared_head", False)),
        )


def _stage(in_ch: int, out_ch: int, n_blocks: int) -> nn.Sequential:
    down = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=2, bias=False), nn.BatchNorm2d(out_ch))
    layers: list[nn.Module] = [BasicBlock(in_ch, out_ch, stride=2, downsample=down)]
    layers += [BasicBlock(out_ch, out_ch) for _ in range(n_blocks - 1)]
    return nn.Sequential(*layers)


def _head(in_ch: int, out_ch: int, bias: float | list[float] = 0.0) -> nn.Sequential:
    last = nn.Conv2d(in_ch, out_ch, 1)
    assert last.bias is not None
    with torch.no_grad():
        last.bias.copy_(torch.as_tensor(bias, dtype=last.bias.dtype).expand(out_ch))
    return nn.Sequential(nn.Conv2d(in_ch, in_ch, 3, padding=1), nn.ReLU(inplace=True), last)


def _stem(cfg: ModelConfig) -> nn.Sequential:
    w = cfg.widths[0]
    layers: list[nn.Module] = []
    for i in range(cfg.stem_convs):
        stride, in_ch = (2, 3) if i == 0 else (1, w)
        layers += [
            nn.Conv2d(in_ch, w, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class TruckNet(nn.Module):
    """CenterNet-style detector; ``forward`` returns raw head outputs at stride 4."""

    def __init__(self, cfg: ModelConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or ModelConfig()
        w = self.cfg.widths
        self.stem = _stem(self.cfg)
        self.stages = nn.ModuleList(
            _stage(w[i], w[i + 1], n) for i, n in enumerate(self.cfg.blocks)
        )
        self.neck = FeaturePyramidNetwork(list(w[1:]), self.cfg.neck_channels)
        c, n = self.cfg.neck_channels, self.cfg.num_classes
        if self.cfg.shared_head:  # outputs: n heatmap channels, then size (2), offset (2)
            self.head = _head(c, n + 4, [HEATMAP_PRIOR_BIAS] * n + [0.0] * 4)
        else:
            self.heatmap = _head(c, n, HEATMAP_PRIOR_BIAS)
            self.size = _head(c, 2)
            self.offset = _head(c, 2)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m.bias is None:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Map a normalised (B, 3, S, S) batch to head outputs of shape (B, C, S/4, S/4)."""
        feats: OrderedDict[str, Tensor] = OrderedDict()
        h = self.stem(x)
        for i, stage in enumerate(self.stages):
            h = stage(h)
            feats[str(i)] = h
        p = self.neck(feats)["0"]
        if self.cfg.shared_head:
            out, n = self.head(p), self.cfg.num_classes
            return {"heatmap": out[:, :n], "size": out[:, n : n + 2], "offset": out[:, n + 2 :]}
        return {"heatmap": self.heatmap(p), "size": self.size(p), "offset": self.offset(p)}


@torch.no_grad()
def decode(
    out: dict[str, Tensor],
    *,
    score_threshold: float,
    nms_iou: float,
    max_detections: int,
    class_agnostic: bool = False,
) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Turn head outputs into per-image (boxes xyxy in input pixels, scores, class ids).

    NMS runs per class (COCO-style, what AP is measured on) or, with ``class_agnostic``, across
    classes: of a truck box and a car box on the same vehicle only the higher-scoring one stays,
    so the tracker gets one box per vehicle instead of two that may become two tracks.
    """
    logits = out["heatmap"].float()  # peaks of the logits are those of the sigmoid
    b, n_cls, h, w = logits.shape
    is_peak = nn.functional.max_pool2d(logits, 3, stride=1, padding=1) == logits
    peaks = logits.masked_fill(~is_peak, float("-inf"))
    k = min(max_detections * 2, n_cls * h * w)
    top, idx = peaks.reshape(b, -1).topk(k)
    scores = top.sigmoid()  # sigmoid of the k candidates only, not of the whole map
    cls = idx // (h * w)
    cell = idx % (h * w)
    ys, xs = (cell // w).float(), (cell % w).float()
    size = out["size"].float().reshape(b, 2, -1).gather(2, cell.unsqueeze(1).expand(b, 2, k))
    off = out["offset"].float().reshape(b, 2, -1).gather(2, cell.unsqueeze(1).expand(b, 2, k))
    cx, cy = (xs + off[:, 0]) * STRIDE, (ys + off[:, 1]) * STRIDE
    bw, bh = size[:, 0].clamp(max=8).exp() * STRIDE, size[:, 1].clamp(max=8).exp() * STRIDE
    boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], dim=2)
    # One NMS over the whole batch: boxes of different images (and, per class, of different
    # classes) never suppress each other, as they sit in different groups.
    image = torch.arange(b, device=logits.device).unsqueeze(1).expand(b, k)
    keep = scores >= score_threshold
    bx, sc, cl, im = boxes[keep], scores[keep], cls[keep], image[keep]
    kept = batched_nms(bx, sc, im if class_agnostic else im * n_cls + cl, nms_iou)
    kept = kept[torch.sort(im[kept], stable=True).indices]  # by image, by score within one
    per_image = torch.bincount(im[kept], minlength=b).tolist()
    results = []
    for part in kept.split(per_image):
        part = part[:max_detections]
        results.append((bx[part], sc[part], cl[part]))
    return results
