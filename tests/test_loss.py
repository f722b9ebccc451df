"""Training targets and losses: what a perfect prediction costs, and what a wrong one does."""

from __future__ import annotations

import numpy as np
import torch

from truckcount.detector.loss import build_targets, dense_box_loss, detection_loss, focal_loss
from truckcount.detector.model import STRIDE


def _targets(boxes: list[list[float]], size: int = 64) -> dict[str, torch.Tensor]:
    t = build_targets(
        np.array(boxes, np.float32).reshape(-1, 4), np.zeros(len(boxes), np.int64), size, 3
    )
    return {k: v.unsqueeze(0) for k, v in t.items()}


def _perfect_outputs(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Head outputs whose every cell predicts exactly the box it is assigned to."""
    box = t["box"][0]
    h, w = box.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    bw, bh = (box[2] - box[0]).clamp(min=1e-3), (box[3] - box[1]).clamp(min=1e-3)
    logit = torch.logit(t["heatmap"][0].clamp(1e-4, 1 - 1e-4))
    return {
        "heatmap": logit.unsqueeze(0),
        "size": torch.stack([bw.log(), bh.log()]).unsqueeze(0),
        "offset": torch.stack([cx - xs, cy - ys]).unsqueeze(0),
    }


def test_the_core_of_each_box_learns_the_whole_box() -> None:
    t = _targets([[8, 8, 40, 32]])  # 32x24 px: 8x6 cells at stride 4
    weighted = t["box_weight"][0] > 0
    assert weighted.sum() > 1  # not only the centre cell
    cells = t["box"][0][:, weighted]
    assert torch.allclose(cells, torch.tensor([8, 8, 40, 32]).float()[:, None] / STRIDE)
    # weights sum to log(1 + area in cells): big boxes weigh more, but not in proportion
    assert torch.isclose(t["box_weight"].sum(), torch.tensor(np.log1p(8 * 6)).float())


def test_a_perfect_prediction_costs_no_box_loss_and_a_shifted_one_does() -> None:
    t = _targets([[8, 8, 40, 32], [44, 40, 60, 60]])
    out = _perfect_outputs(t)
    assert dense_box_loss(out, t["box"], t["box_weight"]) < 1e-5
    shifted = {**out, "offset": out["offset"] + 1.5}
    assert dense_box_loss(shifted, t["box"], t["box_weight"]) > 0.1


def test_the_total_loss_includes_the_box_term() -> None:
    t = _targets([[8, 8, 40, 32]])
    out = _perfect_outputs(t)
    out["size"] = out["size"] + 0.5  # boxes too big everywhere
    losses = detection_loss(out, t)
    assert losses["box"] > 0
    assert losses["total"] > losses["heatmap"] + losses["size"] + losses["offset"]


def test_an_image_without_boxes_has_no_box_loss() -> None:
    t = _targets(np.zeros((0, 4)).tolist())
    out = {
        "heatmap": torch.zeros(1, 3, 16, 16),
        "size": torch.zeros(1, 2, 16, 16),
        "offset": torch.zeros(1, 2, 16, 16),
    }
    assert dense_box_loss(out, t["box"], t["box_weight"]) == 0


def test_a_class_weight_scales_only_that_class_s_missed_centres() -> None:
    heat = torch.zeros(1, 3, 8, 8)
    heat[0, 0, 2, 2] = 1.0  # a truck centre
    heat[0, 2, 5, 5] = 1.0  # a car centre
    logits = torch.full((1, 3, 8, 8), -9.0)  # nothing found: both centres cost the same
    plain = focal_loss(logits, heat)
    doubled_truck = focal_loss(logits, heat, pos_weight=[2.0, 1.0, 1.0])
    doubled_bus = focal_loss(logits, heat, pos_weight=[1.0, 2.0, 1.0])
    assert torch.isclose(doubled_truck, plain * 1.5, rtol=1e-3)  # one of two centres doubled
    assert torch.isclose(doubled_bus, plain)  # no bus here: nothing changes
