"""The crop classifier: its crops, checkpoints and training, and the shipped one on real frames."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from tests.test_detector_train import make_dataset
from truckcount.config import DEFAULT_CLASSIFIER, DetectorConfig
from truckcount.detector import crop_train
from truckcount.detector import data as ds
from truckcount.detector.crop_classifier import KIND, CropClassifier, CropConfig, CropNet, crop_box
from truckcount.detector.crop_train import CropSet, CropTrainArgs, evaluate, run
from truckcount.detector.infer import Detector
from truckcount.detector.weights import (
    CheckpointError,
    export_weights,
    load_checkpoint,
    save_checkpoint,
)
from truckcount.types import CLASSES

DEMO_CLIP = Path(__file__).resolve().parents[1] / "demo" / "km39-siang.mp4"
KM39 = Path(__file__).resolve().parents[2] / "shared" / "data" / "km39-cctv"


def test_a_crop_is_the_box_plus_its_margin_resized() -> None:
    img = np.zeros((100, 200, 3), np.uint8)
    img[40:60, 50:90] = 255  # a 40x20 white box
    out = crop_box(img, [50, 40, 90, 60], CropConfig(input_size=20, margin=0.25))
    # The box fills the middle two thirds of the crop on each axis (margin 0.25 per side).
    assert out[5:15, 5:15].min() == 255
    assert out[0, :].max() == 0 and out[:, 0].max() == 0


def test_the_frame_edge_is_repeated_outside_the_frame() -> None:
    img = np.zeros((50, 50, 3), np.uint8)
    img[:, :5] = 200  # bright left edge
    out = crop_box(img, [-20, 10, 10, 40], CropConfig(input_size=16, margin=0.0))
    assert out[:, :8].min() == 200  # the left half lies outside the frame: edge colour


def test_a_crop_barely_depends_on_the_frames_resolution() -> None:
    rng = np.random.default_rng(0)
    small = cv2.resize(rng.integers(0, 255, (36, 64, 3), np.uint8), (640, 360))
    big = cv2.resize(small, (1280, 720), interpolation=cv2.INTER_LINEAR)
    cfg = CropConfig(input_size=32)
    a = crop_box(small, [100, 100, 300, 220], cfg).astype(float)
    b = crop_box(big, [200, 200, 600, 440], cfg).astype(float)
    assert np.abs(a - b).mean() < 4.0


def test_a_detector_checkpoint_is_not_a_classifier(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a vehicle-class"):
        CropClassifier(DetectorConfig().weights, torch.device("cpu"))
    bad = tmp_path / "classifier.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"classifier\.pt"):
        CropClassifier(bad, torch.device("cpu"))


def test_weights_of_another_shape_are_a_clear_error(tmp_path: Path) -> None:
    state = {
        "kind": KIND,
        "model": CropNet(CropConfig(widths=(8, 16))).state_dict(),
        "model_config": CropConfig().to_dict(),
        "classes": [c.value for c in CLASSES],
    }
    save_checkpoint(state, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        CropClassifier(tmp_path / "c.pt", torch.device("cpu"))


def test_a_missing_classifier_is_named_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"missing\.pt"):
        Detector(DetectorConfig(classifier=tmp_path / "missing.pt"))


def test_the_classifier_is_part_of_the_model_version() -> None:
    with_it = Detector(DetectorConfig()).version
    without = Detector(DetectorConfig(classifier=None)).version
    assert with_it.startswith(without + "+classifier-")


@pytest.mark.slow
def test_onnx_runtime_gives_the_eager_probabilities(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    ok, frame = cv2.VideoCapture(str(DEMO_CLIP)).read()  # a real frame of the km39 camera
    assert ok
    eager = CropClassifier(DEFAULT_CLASSIFIER, torch.device("cpu"))
    boxes = [[0, 0, frame.shape[1], frame.shape[0]], [10, 20, 90, 70], [-30, 5, 40, 400]]
    crops = [eager.crop(frame, b) for b in boxes]
    onnx = CropClassifier(DEFAULT_CLASSIFIER, torch.device("cpu"), "onnx")
    assert np.abs(onnx.probabilities(crops) - eager.probabilities(crops)).max() < 1e-5
    assert onnx.probabilities([]).shape == (0, len(CLASSES))

    # A damaged export in the cache is named, with the way out, not an onnxruntime traceback.
    (cached,) = (tmp_path / "truckcount" / "onnx").glob("classifier-*.onnx")
    cached.write_bytes(b"truncated")
    with pytest.raises(CheckpointError, match="delete it to re-export"):
        CropClassifier(DEFAULT_CLASSIFIER, torch.device("cpu"), "onnx")


@pytest.mark.parametrize(
    "balance, share",
    [(1.0, [1 / 3] * 3), (0.5, [1 / 6, 2 / 6, 3 / 6]), (0.0, [1 / 14, 4 / 14, 9 / 14])],
)
def test_draws_balance_the_classes(balance: float, share: list[float]) -> None:
    """1, 4 and 9 day boxes of truck, bus and car: drawn equally, by square root, or as labelled;
    a night box is drawn ``night_oversample`` times as often as a day box of its class."""
    classes = np.repeat(np.arange(3), [1, 4, 9])
    crops = CropSet(
        [], np.zeros(14, np.int64), np.zeros((14, 4), np.float32), classes, np.zeros(14, bool)
    )
    p = crops.draw_weights(night_oversample=3, balance=balance)
    assert np.bincount(classes, weights=p).tolist() == pytest.approx(share)
    night = replace(crops, night=classes == 1)
    q = night.draw_weights(night_oversample=3, balance=balance)
    assert q[1] / q[0] == pytest.approx(3 * p[1] / p[0])


def test_smoke_train_resumes_where_it_stopped_and_ships(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_dataset(tmp_path / "data")
    args = CropTrainArgs(
        data=str(data), output=str(tmp_path / "whole"), epochs=2, draws_per_epoch=64,
        batch_size=16, amp=False,
    )  # fmt: skip
    run(args)
    whole = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")["model"]

    # The same run killed after its first epoch, then resumed from its checkpoint.
    cut = CropTrainArgs(**{**asdict(args), "output": str(tmp_path / "cut")})
    real_epoch = crop_train._epoch

    def epoch_then_die(epoch: int, *rest: Any) -> float:
        best = real_epoch(epoch, *rest)
        if epoch == 0:
            raise KeyboardInterrupt
        return best

    monkeypatch.setattr(crop_train, "_epoch", epoch_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(cut)
    report = run(args, resume=tmp_path / "cut" / "checkpoint.pt")  # its own saved arguments
    log = [json.loads(line) for line in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [0, 1]
    resumed = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["model"]
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)  # same as never stopped
    assert set(report["val"]["all"]) == {c.value for c in CLASSES}

    export_weights(tmp_path / "cut" / "best.pt", tmp_path / "classifier.pt")
    clf = CropClassifier(tmp_path / "classifier.pt", torch.device("cpu"))
    img = ds.read_image(next((data / "images").iterdir()))
    probs = clf.probabilities([clf.crop(img, [10, 10, 60, 50])] * 3)
    assert probs.shape == (3, len(CLASSES)) and np.allclose(probs.sum(1), 1, atol=1e-5)


@pytest.mark.slow
def test_the_shipped_classifier_on_validation_boxes() -> None:
    """On the labelled boxes of frames it never trained on, trucks and cars are told apart."""
    if not KM39.is_dir():
        assert os.environ.get("CI") != "true", f"{KM39} is missing under CI"
        pytest.skip("km39 data not present")
    _, val = ds.split(ds.load_samples(KM39))
    clf = CropClassifier(DEFAULT_CLASSIFIER, torch.device("cpu"))
    report = evaluate(clf.net, CropSet.of(val))
    assert report["day"]["truck"]["recall"] >= 0.85
    assert report["day"]["truck"]["precision"] >= 0.9
    assert report["day"]["car"]["recall"] >= 0.95
    assert report["night"]["truck"]["recall"] >= 0.8
