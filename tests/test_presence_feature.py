"""The truck-presence feature: every analysed frame is classified once and tallied per
15-minute UTC slot of its camera; the cascade reuses the same probabilities."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch

from tests.helpers import make_frame, presence_checkpoint
from truckcount.aggregator.presence import PresenceTally, slot_start
from truckcount.config import AppConfig, CameraConfig, CascadeConfig, PresenceFeatureConfig
from truckcount.detector.infer import Detector
from truckcount.detector.presence import PresenceClassifier
from truckcount.pipeline import CameraStages, build_stages, detect
from truckcount.types import Frame, PresenceSlot, RunInfo, ValidationError


def frame_at(ts: datetime, camera_id: str = "cam") -> Frame:
    frame = make_frame(0.0, camera_id)
    return Frame(camera_id, ts, 0, frame.image)


@pytest.mark.parametrize(
    ("ts", "slot"),
    [
        ("2024-03-01T08:14:59.999+00:00", "2024-03-01T08:00:00+00:00"),
        ("2024-03-01T08:15:00+00:00", "2024-03-01T08:15:00+00:00"),
        ("2024-03-01T13:50:00+05:30", "2024-03-01T08:15:00+00:00"),  # India: slots tile 05:30
        ("2024-03-01T08:59:59+05:45", "2024-03-01T03:00:00+00:00"),  # Nepal: 05:45
    ],
)
def test_slots_are_quarter_hours_of_utc(ts: str, slot: str) -> None:
    assert slot_start(datetime.fromisoformat(ts)) == datetime.fromisoformat(slot)


def test_tally_counts_frames_and_truck_frames_per_slot_then_starts_again(tmp_path: Path) -> None:
    classifier = PresenceClassifier(presence_checkpoint(tmp_path, 0.0), torch.device("cpu"))
    tally = PresenceTally("cam", classifier, threshold=0.5)
    t0 = datetime(2024, 3, 1, 8, 14, 58, tzinfo=UTC)
    frames = [frame_at(t0 + timedelta(seconds=s)) for s in (0, 1, 2, 3)]
    probs = np.array([[0.1, 0.7], [0.2, 0.4], [0.5, 0.0], [0.0, 0.0]], np.float32)
    tally.observe(frames, probs)  # rows: truck (0.7), none, truck (0.5 = threshold), none
    first, second = datetime(2024, 3, 1, 8, 0, tzinfo=UTC), datetime(2024, 3, 1, 8, 15, tzinfo=UTC)
    assert tally.drain() == [PresenceSlot("cam", first, 2, 1), PresenceSlot("cam", second, 2, 1)]
    assert tally.drain() == []
    with pytest.raises(ValueError, match="3 frames but 4"):
        tally.observe(frames[:3], probs)


@pytest.mark.parametrize(
    ("start", "frames", "trucks"),
    [
        pytest.param(datetime(2024, 3, 1, 8, 5, tzinfo=UTC), 1, 0, id="not-a-boundary"),
        pytest.param(datetime(2024, 3, 1, 8, 0), 1, 0, id="naive"),
        pytest.param(datetime(2024, 3, 1, 8, 0, tzinfo=UTC), 0, 0, id="no-frames"),
        pytest.param(datetime(2024, 3, 1, 8, 0, tzinfo=UTC), 2, 3, id="more-trucks-than-frames"),
    ],
)
def test_bad_slots_are_rejected(start: datetime, frames: int, trucks: int) -> None:
    with pytest.raises(ValidationError):
        PresenceSlot("cam", start, frames, trucks)


def _stages(
    tmp_path: Path, bias: float, cascade: bool
) -> tuple[AppConfig, dict[str, CameraStages]]:
    weights = presence_checkpoint(tmp_path, bias)
    cams = tuple(CameraConfig(id=c, timezone="UTC") for c in ("a", "b"))
    cfg = AppConfig(
        cameras=cams,
        presence=PresenceFeatureConfig(weights=weights),
        cascade=CascadeConfig(enabled=cascade, use_presence=True, audit_every=1000),
        counter={"classes": ["truck"]},
    )
    run = RunInfo("r", "a", "", "m", "", datetime.now(UTC))
    return cfg, {c.id: build_stages(cfg, c, run) for c in cams}


def test_one_classifier_pass_per_batch_feeds_every_cameras_tally_and_cascade(
    tmp_path: Path,
) -> None:
    cfg, stages = _stages(tmp_path, bias=-10.0, cascade=True)  # never a truck
    a, b = stages["a"], stages["b"]
    assert a.presence is not None and b.presence is not None and a.gate is not None
    assert a.presence.classifier is b.presence.classifier is a.gate.presence, "loaded once"
    calls: list[int] = []
    real = a.presence.classifier.probabilities

    def counted(imgs: list[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        calls.append(len(imgs))
        return real(imgs)

    a.presence.classifier.probabilities = counted
    t0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
    batch = [frame_at(t0 + timedelta(seconds=i), cam) for i, cam in enumerate("abab")]
    out = detect(Detector(cfg.detector), batch, stages.__getitem__)
    assert calls == [4], "one pass for the whole mixed batch, reused by both cascades"
    assert all(d is None for d in out), "no truck anywhere: the cascades skip every frame"
    assert a.presence.drain() == [PresenceSlot("a", t0, 2, 0)]
    assert b.presence.drain() == [PresenceSlot("b", t0, 2, 0)]


def test_without_weights_there_is_no_tally_and_no_classifier_pass(tmp_path: Path) -> None:
    cfg = AppConfig(presence=PresenceFeatureConfig(weights=None))
    cam = CameraConfig(id="a", timezone="UTC")
    stages = build_stages(cfg, cam, RunInfo("r", "a", "", "m", "", datetime.now(UTC)))
    assert stages.presence is None and stages.gate is None
    dets = detect(Detector(cfg.detector), [make_frame(0.0, "a")], lambda _: stages)
    assert len(dets) == 1 and dets[0] is not None
