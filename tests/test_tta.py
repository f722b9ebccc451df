"""Inference settings of the detector: input size and mirrored averaging (``detector.flip``).

A road camera sees a vehicle and its mirror image equally often, so ``flip`` averages the
network's output over a frame and its mirror. The specification: the averaged maps of a mirrored
input are the mirror of those of the input, and so a mirrored frame gives mirrored boxes; the
version string says how frames were run, since it changes the counts.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from typer.testing import CliRunner

from truckcount.cli import app
from truckcount.config import DetectorConfig
from truckcount.detector.infer import Detector
from truckcount.detector.model import ModelConfig, TruckNet
from truckcount.detector.tta import FlipAverage
from truckcount.detector.weights import model_version
from truckcount.ingest import open_video
from truckcount.types import Frame

ROOT = Path(__file__).resolve().parent.parent
DEMO_CLIP = ROOT / "demo" / "km39-siang.mp4"
START = datetime(2021, 11, 15, 6, 17, 9, tzinfo=UTC)


@pytest.fixture(scope="module")
def frames() -> list[Frame]:
    clip = open_video(DEMO_CLIP, camera_id="km39", start=START, analysis_fps=5.0)
    return [f for i, f in enumerate(clip) if i % 40 == 0][:4]


def test_averaged_maps_of_a_mirrored_input_are_the_mirrored_maps() -> None:
    torch.manual_seed(0)
    net = FlipAverage(TruckNet(ModelConfig(input_size=64)).eval())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out, mirrored = net(x), net(x.flip(3))
    torch.testing.assert_close(mirrored["heatmap"].flip(3), out["heatmap"])
    torch.testing.assert_close(mirrored["size"].flip(3), out["size"])
    back = mirrored["offset"].flip(3)
    torch.testing.assert_close(1 - back[:, 0], out["offset"][:, 0])  # x offsets turn round
    torch.testing.assert_close(back[:, 1], out["offset"][:, 1])


def test_a_mirrored_frame_gives_mirrored_boxes(frames: list[Frame]) -> None:
    detector = Detector(DetectorConfig(flip=True, classifier=None))
    mirrored = [replace(f, image=np.ascontiguousarray(f.image[:, ::-1])) for f in frames]
    pairs = zip(frames, detector.predict(frames), detector.predict(mirrored), strict=True)
    n_boxes = 0
    for frame, a, b in pairs:
        w = frame.size[0]
        flipped = b.xyxy[:, [2, 1, 0, 3]] * np.array([-1, 1, -1, 1]) + np.array([w, 0, w, 0])
        strong = np.flatnonzero(a.confidence > 0.3)
        for i in strong:
            twin = (
                (b.class_id == a.class_id[i])
                & (np.abs(flipped - a.xyxy[i]).max(axis=1) <= 1.0)
                & (np.abs(b.confidence - a.confidence[i]) <= 0.01)
            )
            assert twin.any(), f"frame {frame.index}: box {a.xyxy[i]} has no mirror image"
        n_boxes += len(strong)
    assert n_boxes > 10, "the demo frames hold vehicles"


def test_the_version_says_how_frames_were_run() -> None:
    plain = model_version(DetectorConfig().weights)
    assert Detector(DetectorConfig(classifier=None)).version == plain
    assert Detector(DetectorConfig(classifier=None, input_size=320)).version == plain
    tagged = Detector(DetectorConfig(classifier=None, input_size=384, flip=True))
    assert tagged.version == f"{plain}@384+flip"
    assert tagged.input_size == 384


def test_a_larger_input_finds_the_same_vehicles(frames: list[Frame]) -> None:
    small = Detector(DetectorConfig(classifier=None)).predict(frames)
    large = Detector(DetectorConfig(classifier=None, input_size=384)).predict(frames)
    for a, b in zip(small, large, strict=True):
        strong_a, strong_b = (a.confidence > 0.5).sum(), (b.confidence > 0.5).sum()
        assert abs(int(strong_a) - int(strong_b)) <= max(2, strong_a // 4)
        # boxes are in frame pixels whatever the input size
        assert b.xyxy[:, 2].max() > 0.5 * frames[0].size[0]


@pytest.mark.parametrize("size", [300, 32, 2048])
def test_an_input_size_the_network_cannot_take_is_a_config_error(size: int) -> None:
    with pytest.raises(ValidationError, match="input_size"):
        DetectorConfig(input_size=size)


def test_eval_detect_refuses_an_input_size_off_the_grid(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["eval", "detect", str(tmp_path), "--input-size", "300"])
    assert result.exit_code == 2
    assert "300 is not a multiple of 32" in result.output
