"""Ignore boxes: vehicles the labels leave out, taught as no class and not as road in training,
and not charged as false boxes in evaluation."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.test_detector_train import make_dataset
from truckcount.cli import app
from truckcount.detector.data import (
    AMBIGUOUS,
    LabelError,
    load_samples,
    read_class_names,
    source_labels,
    split,
)
from truckcount.detector.evaluate import ap_per_class
from truckcount.detector.ignore_boxes import add_ignored, read_ignore_boxes
from truckcount.detector.loss import AMBIGUOUS_PEAK, build_targets

HEADER = "label_file,x0,y0,x1,y1,note\n"
REPO = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, rows: str) -> Path:
    path = tmp_path / "ignore.csv"
    path.write_text(HEADER + rows)
    return path


def test_boxes_are_read_per_label_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "adit-00001,0.1,0.2,0.3,0.4,far truck\nadit-00001,0.5,0.5,0.6,0.7,\n")
    boxes = read_ignore_boxes(path)
    assert list(boxes) == ["adit-00001"]
    np.testing.assert_allclose(boxes["adit-00001"], [[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.6, 0.7]])


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("adit-00001,0.1,0.2,x,0.4,\n", "ignore.csv:2: expected numbers"),
        ("adit-00001,0.3,0.2,0.1,0.4,\n", "ignore.csv:2: expected 0 <= x0 < x1"),
        ("adit-00001,0.1,0.2,0.3,1.4,\n", "ignore.csv:2: expected 0 <= x0 < x1"),
        ("adit-00001,0.1,0.2,0.3,\n", "ignore.csv:2: expected numbers"),
    ],
)
def test_a_malformed_row_is_named(tmp_path: Path, rows: str, message: str) -> None:
    with pytest.raises(LabelError, match=re.escape(message)):
        read_ignore_boxes(_write(tmp_path, rows))


def test_a_file_without_the_columns_or_missing_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("image,line\nadit-00001,1\n")
    with pytest.raises(LabelError, match=re.escape("bad.csv: expected the columns label_file")):
        read_ignore_boxes(bad)
    with pytest.raises(LabelError, match=re.escape("nope.csv: cannot read")):
        read_ignore_boxes(tmp_path / "nope.csv")


def test_ignored_boxes_join_their_training_frame_as_ambiguous(tmp_path: Path) -> None:
    train, _ = split(load_samples(make_dataset(tmp_path / "data")))
    marked = add_ignored(train, {"adit-00003": np.array([[0.6, 0.6, 0.8, 0.9]], np.float32)})
    by_stem = {s.image_path.stem: s for s in marked}
    assert by_stem["adit-00003"].classes.tolist() == [0, AMBIGUOUS]
    np.testing.assert_allclose(by_stem["adit-00003"].boxes[1], [0.6, 0.6, 0.8, 0.9])
    others = [s for s in marked if s.image_path.stem != "adit-00003"]
    assert all(s.classes.tolist() == [0] for s in others), "other frames are untouched"


def test_a_box_for_a_frame_not_trained_on_is_an_error(tmp_path: Path) -> None:
    train, _ = split(load_samples(make_dataset(tmp_path / "data")))
    box = np.array([[0.1, 0.1, 0.2, 0.2]], np.float32)
    with pytest.raises(
        LabelError, match=r"not training frames of this folder \(first: siang_15112021_1-00000\)"
    ):
        add_ignored(train, {"siang_15112021_1-00000": box})


def test_an_ignored_box_is_neither_any_class_nor_background() -> None:
    boxes = np.array([[8.0, 8.0, 40.0, 40.0]], np.float32)
    t = build_targets(boxes, np.array([AMBIGUOUS]), 64, 3, ambiguous=(0, 1, 2))
    peaks = t["heatmap"].amax(dim=(1, 2))
    assert peaks.tolist() == pytest.approx([AMBIGUOUS_PEAK] * 3)
    assert t["heatmap"].eq(1).sum() == 0, "no centre to learn as a vehicle"


def test_training_reads_the_ignore_file_and_marks_all_classes(tmp_path: Path) -> None:
    from truckcount.detector.train import TrainArgs, _load_data

    data = make_dataset(tmp_path / "data")
    path = _write(tmp_path, "adit-00002,0.6,0.6,0.8,0.9,\n")
    args = TrainArgs(str(data), input_size=64, cache_size=96, ignore_boxes=str(path))
    dataset, val, _ = _load_data(args)
    stem = [s.image_path.stem for s in dataset.samples].index("adit-00002")
    assert dataset.samples[stem].classes.tolist() == [0, AMBIGUOUS]
    assert dataset.ambiguous == (0, 1, 2)
    assert all(AMBIGUOUS not in s.classes for s in val), "validation labels stay as they are"


def test_training_with_a_bad_ignore_file_exits_naming_it(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data")
    path = _write(tmp_path, "siang_15112021_1-00001,0.1,0.1,0.2,0.2,\n")
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["train", str(data), "--output", str(out), "--ignore-boxes", str(path)]
    )
    assert result.exit_code == 1
    assert "ignore.csv: 1 label files are not training frames" in result.stderr
    assert not out.exists(), "a run that never started leaves no folder"


def test_the_shipped_unlabelled_truck_list_is_well_formed() -> None:
    boxes = read_ignore_boxes(REPO / "benchmarks" / "km39_unlabelled_trucks.csv")
    assert sum(len(b) for b in boxes.values()) == 136
    assert all(stem.startswith("siang_15112021_1-") for stem in boxes)


def _mine_unlabelled() -> ModuleType:
    folder = REPO / "benchmarks"
    sys.path.insert(0, str(folder))  # it imports the ensemble script beside it
    try:
        spec = importlib.util.spec_from_file_location(
            "mine_unlabelled", folder / "mine_unlabelled.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(folder))
    return module


def test_mining_keeps_one_box_per_place_that_no_label_covers() -> None:
    mine = _mine_unlabelled()
    labels = np.array([[0.10, 0.10, 0.30, 0.30]], np.float32)
    boxes = np.array(
        [
            [0.11, 0.10, 0.31, 0.30],  # the labelled vehicle
            [0.60, 0.60, 0.70, 0.75],  # a vehicle nobody labelled
            [0.61, 0.60, 0.71, 0.75],  # the same, under another class, lower score
            [0.12, 0.12, 0.22, 0.20],  # a part of the labelled vehicle (inside its box)
            [0.20, 0.20, 0.40, 0.40],  # overlapping the label (IoU 0.14): a localisation error
        ],
        np.float32,
    )
    scores = np.array([0.9, 0.5, 0.4, 0.6, 0.7], np.float32)
    assert mine.uncovered(boxes, scores, labels) == [1]
    assert mine.uncovered(boxes[1:3], scores[1:3], np.zeros((0, 4), np.float32)) == [0]


def test_the_shipped_training_ignore_file_names_training_frames_only() -> None:
    boxes = read_ignore_boxes(REPO / "benchmarks" / "km39_unlabelled_training.csv")
    assert sum(len(b) for b in boxes.values()) == 10_092
    for stem in boxes:
        seq, index = stem.rsplit("-", 1)
        assert seq != "siang_15112021_1" and not (seq == "malam_04112021" and int(index) >= 190)


def test_source_labels_keep_the_source_class_of_each_known_box(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data")
    (data / "labels" / "adit-00001.txt").write_text(
        "0 0.3 0.3 0.2 0.2\n2 0.5 0.5 0.1 0.1\n1 0.7 0.7 0.2 0.2\n"
    )
    sample = next(s for s in load_samples(data) if s.image_path.stem == "adit-00001")
    boxes, names = source_labels(sample, read_class_names(data))
    assert names == ["big truck", "car"], "a class the merge does not know is left out"
    np.testing.assert_allclose(boxes[1], [0.6, 0.6, 0.8, 0.8], atol=1e-6)


def test_a_box_on_a_crowd_region_is_neither_a_hit_nor_a_false_box() -> None:
    truck = [10.0, 10.0, 50.0, 50.0]
    unlabelled = [100.0, 100.0, 140.0, 140.0]
    preds = [
        {
            "boxes": torch.tensor([unlabelled, truck]),
            "scores": torch.tensor([0.9, 0.8]),
            "labels": torch.tensor([0, 0]),
        }
    ]
    labelled = {"boxes": torch.tensor([truck]), "labels": torch.tensor([0])}
    crowd = {
        "boxes": torch.tensor([truck, unlabelled]),
        "labels": torch.tensor([0, 0]),
        "iscrowd": torch.tensor([0, 1]),
    }
    assert ap_per_class(preds, [labelled], [0.5])["truck"] < 1.0, "charged as a false box"
    assert ap_per_class(preds, [crowd], [0.5])["truck"] == pytest.approx(1.0)
