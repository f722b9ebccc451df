"""Label fixes: class corrections kept beside a labelled folder, applied when it is read."""

from __future__ import annotations

import csv
import importlib.util
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.test_detector_train import make_dataset
from truckcount.cli import app
from truckcount.detector.data import AMBIGUOUS, LabelError, load_samples, mark_ambiguous
from truckcount.detector.label_fixes import LabelFixError, read_label_fixes

TRUCK, CAR = 0, 2  # merged ids
HEADER = "image,line,was,to,note\n"


def _two_box_dataset(root: Path) -> Path:
    """The synthetic folder, with adit-00001 holding a truck on line 1 and a car on line 2."""
    data = make_dataset(root)
    (data / "labels" / "adit-00001.txt").write_text(
        "0 0.30 0.30 0.20 0.20\n1 0.70 0.70 0.20 0.20\n"
    )
    return data


def _classes(data: Path, fixes_csv: str | None, tmp_path: Path) -> dict[str, list[int]]:
    fixes = None
    if fixes_csv is not None:
        path = tmp_path / "fixes.csv"
        path.write_text(HEADER + fixes_csv)
        fixes = read_label_fixes(path)
    return {s.image_path.stem: s.classes.tolist() for s in load_samples(data, fixes=fixes)}


def test_a_fix_changes_only_the_line_it_names(tmp_path: Path) -> None:
    data = _two_box_dataset(tmp_path / "data")
    before = _classes(data, None, tmp_path)
    after = _classes(data, "adit-00001,2,car,big truck,a pickup\n", tmp_path)
    assert before["adit-00001"] == [TRUCK, CAR]
    assert after["adit-00001"] == [TRUCK, TRUCK]
    assert {k: v for k, v in after.items() if k != "adit-00001"} == {
        k: v for k, v in before.items() if k != "adit-00001"
    }


def test_boxes_stay_where_they_were(tmp_path: Path) -> None:
    data = _two_box_dataset(tmp_path / "data")
    path = tmp_path / "fixes.csv"
    path.write_text(HEADER + "adit-00001,2,car,big truck,\n")
    plain = {s.image_path.stem: s.boxes for s in load_samples(data)}
    fixed = {s.image_path.stem: s.boxes for s in load_samples(data, fixes=read_label_fixes(path))}
    assert np.array_equal(plain["adit-00001"], fixed["adit-00001"])


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("adit-00001,2,big truck,car,", r"adit-00001\.txt:2: a label fix expects class 0 here"),
        ("adit-00001,5,car,big truck,", r"adit-00001\.txt: a label fix names line 5"),
        ("adit-09999,1,car,big truck,", r"fixes name 1 label files missing or empty"),
        ("adit-00001,2,car,lorry,", r"fixes\.csv:2: class 'lorry' is not in data\.yaml"),
    ],
    ids=["class-changed", "no-such-line", "no-such-file", "unknown-class"],
)
def test_a_fix_that_does_not_match_the_folder_is_an_error(
    tmp_path: Path, row: str, message: str
) -> None:
    data = _two_box_dataset(tmp_path / "data")
    with pytest.raises(LabelFixError, match=message):
        _classes(data, row + "\n", tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("image,line,class\nadit-00001,2,car\n", "expected the header image,line,was,to,note"),
        (HEADER + "adit-00001,two,car,big truck,\n", r":2: line must be a whole number"),
        (HEADER + "adit-00001,0,car,big truck,\n", r":2: line must be at least 1"),
        (HEADER + "adit-00001,2,,big truck,\n", r":2: image, was and to must not be empty"),
        (HEADER + "a-1,2,car,bus,\na-1,2,car,bus,\n", r":3: a-1 line 2 is fixed twice"),
    ],
    ids=["header", "line-not-a-number", "line-zero", "empty-class", "twice"],
)
def test_a_malformed_fixes_file_names_its_row(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "fixes.csv"
    path.write_text(text)
    with pytest.raises(LabelFixError, match=message):
        read_label_fixes(path)


def test_a_missing_fixes_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(LabelFixError, match=r"absent\.csv: cannot read the label fixes"):
        read_label_fixes(tmp_path / "absent.csv")


def test_the_shipped_km39_fixes_file_is_well_formed() -> None:
    fixes = read_label_fixes(Path(__file__).parents[1] / "benchmarks" / "km39_label_fixes.csv")
    rows = [f for lines in fixes.by_image.values() for f in lines.values()]
    assert len(fixes) == len(rows) > 0
    assert {(f.was, f.to) for f in rows} == {("car", "truck-s-")}
    # training sequences only: the validation frames keep their labels
    assert not [f for f in rows if f.image.startswith("siang_15112021_1-")]
    assert not [
        f for f in rows if f.image.startswith("malam_04112021-") and int(f.image[-5:]) >= 190
    ]


@pytest.mark.parametrize("command", ["train", "train-classifier", "train-presence"])
def test_training_with_a_fix_that_does_not_match_exits_naming_it(
    tmp_path: Path, command: str
) -> None:
    data = _two_box_dataset(tmp_path / "data")
    fixes = tmp_path / "fixes.csv"
    fixes.write_text(HEADER + "adit-00001,2,big truck,car,\n")
    result = CliRunner().invoke(
        app, [command, str(data), "--output", str(tmp_path / "run"), "--label-fixes", str(fixes)]
    )
    assert result.exit_code == 1
    assert "adit-00001.txt:2: a label fix expects class 0 here" in result.stderr
    assert not (tmp_path / "run").exists(), "a run that never started leaves no folder"


@pytest.mark.parametrize(
    "command", [["eval", "detect"], ["eval", "counts", "--config", "demo/km39.yaml"]]
)
def test_evaluating_with_a_fix_that_does_not_match_exits_naming_it(
    tmp_path: Path, command: list[str]
) -> None:
    data = _two_box_dataset(tmp_path / "data")
    fixes = tmp_path / "fixes.csv"
    fixes.write_text(HEADER + "adit-00001,3,car,big truck,\n")
    root = Path(__file__).parents[1]
    args = [a if a != "demo/km39.yaml" else str(root / a) for a in command]
    result = CliRunner().invoke(app, [*args, str(data), "--label-fixes", str(fixes)])
    assert result.exit_code == 1
    assert "adit-00001.txt: a label fix names line 3, which has no box" in result.stderr


def _label_review() -> ModuleType:
    path = Path(__file__).parents[1] / "benchmarks" / "label_review.py"
    spec = importlib.util.spec_from_file_location("label_review", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_review_tool_writes_fixes_that_relabel_the_whole_vehicle(tmp_path: Path) -> None:
    review = _label_review()
    data = make_dataset(tmp_path / "data", n_train=6)  # one box on each frame
    found = review.vehicles(data, "big truck", min_frames=1, min_width=0.0)
    assert sum(len(v) for v in found) == 6  # every training box is in one listed vehicle
    pages = review.write_grids(found, "big truck", tmp_path / "review")
    assert [p.name for p in pages] == ["big_truck-00.png"]
    rows = review.fix_rows(found, list(range(len(found))), "big truck", "car", "a van")
    fixes = tmp_path / "fixes.csv"
    with fixes.open("w", newline="") as f:
        csv.writer(f).writerows([["image", "line", "was", "to", "note"], *rows])
    classes: dict[str, set[int]] = {}
    for s in load_samples(data, fixes=read_label_fixes(fixes)):
        classes.setdefault(s.sequence, set()).update(s.classes.tolist())
    assert classes == {
        "adit": {CAR},  # training frames: the vehicles are now cars
        "siang_15112021_1": {TRUCK},  # validation frames are never listed
    }


@pytest.mark.slow
def test_the_km39_fixes_move_only_the_training_sequence_ground_truth() -> None:
    """Trucks crossing line y60 (toward, away) in ground truth linked from the labels as published
    and with the shipped fixes: the validation sequences keep theirs, aditganteng gains the four
    pickups and box trucks labelled car that cross the line driving away."""
    from tests.test_count_eval import DATASET, REPO, SEQUENCES, _require
    from truckcount.aggregator.groundtruth import LabelledFrame, ground_truth, load_spec
    from truckcount.config import load_config

    _require(DATASET, "the km39 dataset")
    cfg = load_config(REPO / "demo/km39.yaml")
    spec = load_spec(SEQUENCES)
    fixes = read_label_fixes(REPO / "benchmarks" / "km39_label_fixes.csv")

    def trucks(fixed: bool) -> dict[str, tuple[int, int]]:
        samples = load_samples(DATASET, fixes=fixes if fixed else None)
        out = {}
        for seq in spec.sequences:
            frames = [
                LabelledFrame(s.index, s.boxes, s.classes)
                for s in samples
                if s.sequence == seq.name and seq.covers(s.index)
            ]
            gt = ground_truth(frames, cfg.cameras[0], cfg.counter, clock=seq.clock, size=(640, 640))
            dirs = [c.direction_name for c in gt.crossings if c.class_name.value == "truck"]
            out[seq.name] = (dirs.count("toward_camera"), dirs.count("away_from_camera"))
        return out

    published = {"siang_15112021_1": (19, 30), "malam_04112021": (0, 3), "aditganteng": (14, 14)}
    assert trucks(fixed=False) == published
    assert trucks(fixed=True) == {**published, "aditganteng": (14, 18)}


def test_fixed_boxes_can_be_marked_ambiguous_instead_of_relabelled(tmp_path: Path) -> None:
    data = _two_box_dataset(tmp_path / "data")
    path = tmp_path / "fixes.csv"
    path.write_text(HEADER + "adit-00001,2,car,big truck,a pickup\n")
    plain = load_samples(data)
    marked = mark_ambiguous(plain, load_samples(data, fixes=read_label_fixes(path)))
    by_stem = {s.image_path.stem: s.classes.tolist() for s in marked}
    assert by_stem["adit-00001"] == [TRUCK, AMBIGUOUS]
    assert {k: v for k, v in by_stem.items() if k != "adit-00001"} == {
        s.image_path.stem: s.classes.tolist() for s in plain if s.image_path.stem != "adit-00001"
    }


def test_marking_two_different_loads_is_an_error(tmp_path: Path) -> None:
    plain = load_samples(_two_box_dataset(tmp_path / "data"))
    with pytest.raises(LabelError, match="different images"):
        mark_ambiguous(plain, plain[1:])


def test_training_can_teach_fixed_boxes_as_neither_truck_nor_car(tmp_path: Path) -> None:
    from truckcount.detector.augment import DetectionDataset
    from truckcount.detector.train import TrainArgs, _load_data

    data = _two_box_dataset(tmp_path / "data")
    path = tmp_path / "fixes.csv"
    path.write_text(HEADER + "adit-00001,2,car,big truck,a pickup\n")

    def dataset(mode: str) -> DetectionDataset:
        args = TrainArgs(str(data), input_size=64, cache_size=96, label_fixes=str(path))
        return _load_data(replace(args, label_fixes_as=mode))[0]

    relabelled, ambiguous = dataset("class"), dataset("ambiguous")
    stem = [s.image_path.stem for s in ambiguous.samples].index("adit-00001")
    assert relabelled.samples[stem].classes.tolist() == [TRUCK, TRUCK]
    assert ambiguous.samples[stem].classes.tolist() == [TRUCK, AMBIGUOUS]
    assert ambiguous.ambiguous == (TRUCK, CAR) and relabelled.ambiguous == ()


def test_ambiguous_fixes_without_a_fixes_file_is_a_usage_error(tmp_path: Path) -> None:
    data = _two_box_dataset(tmp_path / "data")
    result = CliRunner().invoke(app, ["train", str(data), "--label-fixes-as", "ambiguous"])
    assert result.exit_code == 2 and "--label-fixes" in result.output
