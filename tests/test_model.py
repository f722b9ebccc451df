"""The detector network: both head layouts, stored configs of earlier models, input tensors."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from truckcount.detector.augment import normalise_nhwc, to_tensor
from truckcount.detector.model import HEATMAP_PRIOR_BIAS, ModelConfig, TruckNet, decode

SMALL = ModelConfig(input_size=64)


@pytest.mark.parametrize("shared", [True, False])
def test_both_head_layouts_give_the_same_outputs_at_stride_4(shared: bool) -> None:
    net = TruckNet(replace(SMALL, shared_head=shared)).eval()
    out = net(torch.zeros(2, 3, 64, 64))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "heatmap": (2, 3, 16, 16),
        "size": (2, 2, 16, 16),
        "offset": (2, 2, 16, 16),
    }
    # Every heatmap starts at the CenterNet prior, whichever layout produced it.
    assert torch.allclose(out["heatmap"].mean(), torch.tensor(HEATMAP_PRIOR_BIAS), atol=0.5)


def test_a_config_stored_before_the_shared_head_builds_the_earlier_layout() -> None:
    stored = {k: v for k, v in SMALL.to_dict().items() if k not in ("stem_convs", "shared_head")}
    cfg = ModelConfig.from_dict(stored)
    assert (cfg.stem_convs, cfg.shared_head) == (2, False)
    keys = TruckNet(cfg).state_dict().keys()
    assert {"heatmap.0.weight", "size.0.weight", "offset.0.weight", "stem.3.weight"} <= set(keys)


def test_a_config_round_trips_through_its_stored_dict() -> None:
    cfg = replace(SMALL, stem_convs=1, shared_head=True, neck_channels=32)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_to_tensor_is_normalised_rgb_in_channel_first_order() -> None:
    bgr = np.zeros((2, 4, 5, 3), np.uint8)
    bgr[..., 0], bgr[..., 1], bgr[..., 2] = 10, 20, 30  # blue, green, red
    x = to_tensor(list(bgr))
    assert x.shape == (2, 3, 4, 5) and x.dtype == torch.float32 and x.is_contiguous()
    mean = np.array([0.485, 0.456, 0.406]) * 255
    std = np.array([0.229, 0.224, 0.225]) * 255
    expected = (np.array([30, 20, 10]) - mean) / std  # red first
    assert np.allclose(x[1, :, 3, 4].numpy(), expected, atol=1e-5)


def test_frames_converted_on_a_device_have_the_same_values_in_channels_last_memory() -> None:
    """On a GPU the uint8 pixels travel and ``normalise_nhwc`` converts them there."""
    bgr = np.random.default_rng(0).integers(0, 256, (2, 4, 5, 3), dtype=np.uint8)
    on_cpu = to_tensor(list(bgr))
    for there in (normalise_nhwc(torch.from_numpy(bgr)), to_tensor(list(bgr), torch.device("cpu"))):
        assert there.shape == on_cpu.shape
        assert there.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(there, on_cpu)


def test_decode_returns_each_heatmap_peak_as_a_box_with_its_sigmoid_score() -> None:
    heat = torch.full((1, 3, 16, 16), -8.0)
    heat[0, 0, 5, 6] = 2.0  # a truck centred in cell (x 6, y 5)
    heat[0, 0, 5, 7] = 1.0  # its neighbour: not a peak, suppressed
    heat[0, 2, 10, 3] = 0.0  # a car at score 0.5
    size = torch.zeros(1, 2, 16, 16)
    size[0, :, 5, 6] = torch.log(torch.tensor([4.0, 2.0]))  # 4 x 2 cells = 16 x 8 px
    offset = torch.full((1, 2, 16, 16), 0.5)
    out = {"heatmap": heat, "size": size, "offset": offset}
    [(boxes, scores, classes)] = decode(out, score_threshold=0.1, nms_iou=0.6, max_detections=10)
    assert classes.tolist() == [0, 2]
    assert torch.allclose(scores, torch.sigmoid(torch.tensor([2.0, 0.0])))
    assert torch.allclose(boxes[0], torch.tensor([26.0 - 8, 22.0 - 4, 26.0 + 8, 22.0 + 4]))


@pytest.mark.parametrize(("class_agnostic", "expected"), [(False, [0, 2]), (True, [0])])
def test_class_agnostic_nms_keeps_one_box_per_vehicle(
    class_agnostic: bool, expected: list[int]
) -> None:
    heat = torch.full((1, 3, 16, 16), -8.0)
    heat[0, 0, 5, 6] = 1.0  # the vehicle as a truck (score 0.73)
    heat[0, 2, 5, 6] = 0.0  # the same vehicle as a car (score 0.5), same cell and box
    heat[0, 2, 12, 12] = 0.0  # another car elsewhere
    out = {
        "heatmap": heat,
        "size": torch.full((1, 2, 16, 16), float(np.log(3.0))),
        "offset": torch.full((1, 2, 16, 16), 0.5),
    }
    [(_, _, classes)] = decode(
        out, score_threshold=0.1, nms_iou=0.6, max_detections=10, class_agnostic=class_agnostic
    )
    assert sorted(classes.tolist()) == sorted([*expected, 2])


@pytest.mark.parametrize("class_agnostic", [False, True])
def test_decoding_a_batch_gives_each_image_what_it_gets_alone(class_agnostic: bool) -> None:
    """Images of one batch share one NMS call; their boxes must never suppress each other."""
    torch.manual_seed(0)
    out = {
        "heatmap": torch.randn(5, 3, 16, 16) * 2,
        "size": torch.randn(5, 2, 16, 16) * 0.3 + 1.0,
        "offset": torch.rand(5, 2, 16, 16),
    }
    out["heatmap"][3] = -9.0  # an image with nothing above the threshold
    args = dict(score_threshold=0.3, nms_iou=0.5, max_detections=7, class_agnostic=class_agnostic)
    batch = decode(out, **args)
    assert len(batch) == 5 and len(batch[3][1]) == 0
    for i in range(5):
        [alone] = decode({k: v[i : i + 1] for k, v in out.items()}, **args)
        assert 0 < len(alone[1]) <= 7 or i == 3
        for got, want in zip(batch[i], alone, strict=True):
            assert torch.equal(got, want)
