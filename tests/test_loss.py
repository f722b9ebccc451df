"""Training targets and losses: what a perfect prediction costs, and what a wrong one does."""

from __future__ import annotations

import numpy as np
import torch

from truckcount.detector.data import AMBIGUOUS
from truckcount.detector.loss import (
    AMBIGUOUS_PEAK,
    build_targets,
    dense_box_loss,
    detection_loss,
    focal_loss,
)
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


def test_an_ambiguous_box_is_neither_class_nor_background_and_still_learns_its_box() -> None:
    truck, bus, car = 0, 1, 2
    boxes = np.array([[8, 8, 40, 32]], np.float32)
    t = build_targets(boxes, np.array([AMBIGUOUS]), 64, 3, ambiguous=(truck, car))
    heat = t["heatmap"]
    assert not heat.eq(1).any()  # no centre to learn on any class
    assert torch.isclose(heat[truck].max(), torch.tensor(AMBIGUOUS_PEAK))
    assert torch.equal(heat[truck], heat[car])
    assert heat[bus].max() == 0  # still background for the classes it cannot be
    assert t["mask"].sum() == 1 and t["box_weight"].sum() > 0  # size and box are learned
    # the focal loss costs (almost) nothing whatever truck/car score the network gives there
    cy, cx = (heat[truck] == heat[truck].max()).nonzero()[0].tolist()
    for score in (0.05, 0.5, 0.95):
        logits = torch.full((1, 3, 16, 16), -9.0)
        logits[0, truck, cy, cx] = logits[0, car, cy, cx] = float(torch.logit(torch.tensor(score)))
        assert focal_loss(logits, heat.unsqueeze(0)) < 1e-4


def test_a_plain_truck_box_is_still_a_truck_centre_when_ambiguity_is_on() -> None:
    t = build_targets(np.array([[8, 8, 40, 32]], np.float32), np.array([0]), 64, 3, (0, 2))
    assert t["heatmap"][0].eq(1).sum() == 1 and t["heatmap"][2].max() == 0
