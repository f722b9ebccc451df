"""Training on a few synthetic frames: loss falls, checkpoints round-trip, bad labels fail."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from truckcount.config import DetectorConfig
from truckcount.detector.data import LabelError, load_samples, split
from truckcount.detector.infer import Detector
from truckcount.detector.train import TrainArgs, _restore, run
from truckcount.detector.weights import (
    CheckpointError,
    export_weights,
    load_checkpoint,
    native_bf16,
    pick_device,
    resolve_amp,
)

NAMES = "names:\n  0: big truck\n  1: car\n  2: bicycle\n"


def make_dataset(root: Path, n_train: int = 8, n_val: int = 2) -> Path:
    """Grey frames with one bright 'truck' rectangle each; names follow the km39 time split."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "data.yaml").write_text(NAMES)
    rng = np.random.default_rng(0)
    names = [f"adit-{i:05d}" for i in range(n_train)]
    names += [f"siang_15112021_1-{i:05d}" for i in range(n_val)]
    for name in names:
        img = np.full((160, 160, 3), 90, np.uint8)
        x, y = rng.integers(10, 90, size=2)
        cv2.rectangle(img, (int(x), int(y)), (int(x) + 50, int(y) + 40), (230, 230, 230), -1)
        cv2.imwrite(str(root / "images" / f"{name}.jpg"), img)
        cx, cy = (x + 25) / 160, (y + 20) / 160
        (root / "labels" / f"{name}.txt").write_text(f"0 {cx:.4f} {cy:.4f} {50 / 160:.4f} 0.25\n")
    return root


def _args(data: Path, out: Path, **over: object) -> TrainArgs:
    base = dict(
        data=str(data),
        output=str(out),
        epochs=3,
        batch_size=4,
        input_size=64,
        cache_size=96,
        workers=0,
        lr=2e-3,
        amp=False,
        night_oversample=1,
    )
    base.update(over)
    return TrainArgs(**base)


def test_split_is_by_sequence_not_random(tmp_path: Path) -> None:
    train, val = split(load_samples(make_dataset(tmp_path)))
    assert {s.sequence for s in train} == {"adit"}
    assert {s.sequence for s in val} == {"siang_15112021_1"}


def test_smoke_train_loss_falls_and_checkpoint_round_trips(tmp_path: Path) -> None:
    data, out = make_dataset(tmp_path / "data"), tmp_path / "run"
    torch.manual_seed(0)
    run(_args(data, out))
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    losses = [entry["loss"]["total"] for entry in log]
    assert len(losses) == 3 and losses[-1] < losses[0]
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["epoch"] == 2 and state["classes"] == ["truck", "bus", "car"]
    # resuming a finished 3-epoch run to 4 epochs trains exactly one more epoch
    run(_args(data, out, epochs=4, resume=str(out / "checkpoint.pt")))
    assert len((out / "log.jsonl").read_text().splitlines()) == 4
    version = export_weights(out / "checkpoint.pt", tmp_path / "slim.pt")
    assert version.startswith("slim-") and "optimizer" not in load_checkpoint(tmp_path / "slim.pt")


def test_bad_label_line_names_file_and_line(tmp_path: Path) -> None:
    data = make_dataset(tmp_path)
    (data / "labels" / "adit-00003.txt").write_text("0 0.5 0.5 0.1 0.1\n0 0.5 oops 0.1 0.1\n")
    with pytest.raises(LabelError, match=r"adit-00003.txt:2: expected 'class cx cy w h'"):
        load_samples(data)


@pytest.mark.parametrize(
    "content",
    [b"not a checkpoint", b"junk\n", b"", bytes(range(256)) * 4, b"PK\x03\x04truncated zip"],
)
def test_unreadable_checkpoint_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    """Whatever bytes a checkpoint file holds, reading it fails with an error naming the file."""
    junk = tmp_path / "junk.pt"
    junk.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*junk\.pt"):
        load_checkpoint(junk)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "absent.pt")


class _NotAllowed:
    """A class the weights-only loader refuses to build."""


def test_a_pickled_object_is_refused_naming_it_not_torchs_paragraph(tmp_path: Path) -> None:
    path = tmp_path / "pickled.pt"
    torch.save({"model": _NotAllowed()}, path)
    with pytest.raises(CheckpointError, match=r"Unsupported global: .*_NotAllowed") as err:
        load_checkpoint(path)
    assert "In PyTorch 2.6" not in str(err.value)


def test_export_makes_missing_folders_and_names_a_path_it_cannot_write(tmp_path: Path) -> None:
    from truckcount.config import DEFAULT_WEIGHTS

    out = tmp_path / "models" / "site" / "mine.pt"
    export_weights(DEFAULT_WEIGHTS, out)
    assert load_checkpoint(out)["model"].keys() == load_checkpoint(DEFAULT_WEIGHTS)["model"].keys()
    (tmp_path / "a-file").write_text("")
    with pytest.raises(CheckpointError, match=r"cannot write checkpoint .*a-file/mine\.pt"):
        export_weights(DEFAULT_WEIGHTS, tmp_path / "a-file" / "mine.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "models"]


def test_the_augmentation_knobs_reach_training_and_its_checkpoint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data, out = make_dataset(tmp_path / "data"), tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="truckcount.detector.train"):
        run(_args(data, out, epochs=1, paste_p=0.5, crop_min=0.3))
    assert any("paste bank:" in r.getMessage() for r in caplog.records)
    args = load_checkpoint(out / "checkpoint.pt")["args"]
    assert args["paste_p"] == 0.5 and args["crop_min"] == 0.3


@pytest.mark.parametrize("name", ["gpu", "mps", "cuda0", "CPU", ""])
def test_a_device_name_other_than_auto_cpu_or_cuda_is_refused_by_name(name: str) -> None:
    with pytest.raises(ValueError, match=f"device '{name}': expected auto, cpu, cuda or cuda:N"):
        pick_device(name)


def test_cuda_without_a_gpu_is_an_error_and_auto_falls_back_to_the_cpu() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert pick_device("auto") == torch.device("cpu")
    with pytest.raises(CheckpointError, match="CUDA is not available"):
        pick_device("cuda:1")


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "native"),
    [(False, False, False), (True, False, True), (False, True, True), (True, True, True)],
)
def test_bf16_is_native_on_a_cpu_only_with_avx512_bf16_or_amx(
    monkeypatch: pytest.MonkeyPatch, avx512_bf16: bool, amx: bool, native: bool
) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert native_bf16(torch.device("cpu")) is native


def test_mixed_precision_defaults_to_what_the_cpu_runs_natively_and_warns_when_forced(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    with caplog.at_level(logging.INFO, logger="truckcount.detector.weights"):
        assert resolve_amp(None, cpu) is False, "emulated bf16 is slower than fp32: off"
        assert resolve_amp(False, cpu) is False
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert resolve_amp(True, cpu) is True, "an explicit --amp is honoured"
    assert any("no native bf16" in r.getMessage() for r in caplog.records if r.levelno >= 30)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert resolve_amp(None, cpu) is True


def test_a_resumed_run_takes_its_precision_from_the_command_not_the_checkpoint(
    tmp_path: Path,
) -> None:
    data, out = make_dataset(tmp_path / "data"), tmp_path / "run"
    run(_args(data, out, epochs=1, amp=False))
    state = load_checkpoint(out / "checkpoint.pt")
    state["args"]["amp"] = True  # as saved by a run on a machine with native bf16
    torch.save(state, out / "checkpoint.pt")
    resumed, _ = _restore(_args(data, out, epochs=2, amp=None, resume=str(out / "checkpoint.pt")))
    assert resumed.amp is None and resumed.epochs == 2 and resumed.crop_min == 0.55


def test_the_detector_warns_that_bf16_inference_is_emulated_on_such_a_cpu(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    with caplog.at_level(logging.WARNING, logger="truckcount.detector.infer"):
        Detector(DetectorConfig(device="cpu", classifier=None))
        assert not caplog.records, "fp32, the default, is not warned about"
        Detector(DetectorConfig(device="cpu", classifier=None, precision="bf16"))
    assert [r.getMessage() for r in caplog.records if "emulated" in r.getMessage()]
