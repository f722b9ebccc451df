"""Builders for hand-off values, so tests read as tables of numbers."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import numpy as np
from sqlalchemy import Engine

from truckcount.types import Detections, Frame, VehicleClass

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
"""Media time zero of every test stream."""


def at(ts_seconds: float) -> datetime:
    """The capture time ``ts_seconds`` after ``T0``."""
    return T0 + timedelta(seconds=ts_seconds)


def make_frame(
    ts_seconds: float, camera_id: str = "cam", size: tuple[int, int] = (640, 360), index: int = 0
) -> Frame:
    """A black frame of ``size`` (width, height) captured ``ts_seconds`` after ``T0``."""
    width, height = size
    image = np.zeros((height, width, 3), dtype=np.uint8)
    return Frame(camera_id=camera_id, ts=at(ts_seconds), index=index, image=image)


def make_detections(
    xyxy: Sequence[Sequence[float]] = (),
    tracker_id: Sequence[int] | None = None,
    confidence: float | Sequence[float] = 0.9,
    class_id: int | VehicleClass | Sequence[int | VehicleClass] = VehicleClass.TRUCK,
) -> Detections:
    """Detections from plain lists; a scalar confidence or class applies to every box."""
    n = len(xyxy)
    conf = np.broadcast_to(np.asarray(confidence, dtype=np.float32), (n,)).copy()
    classes = [class_id] * n if isinstance(class_id, int | VehicleClass) else list(class_id)
    ids = np.array([c.id if isinstance(c, VehicleClass) else c for c in classes], dtype=np.int64)
    tid = None if tracker_id is None else np.asarray(tracker_id, dtype=np.int64)
    return Detections(np.asarray(xyxy, dtype=np.float32).reshape(n, 4), conf, ids, tid)


def box_at(x: float, y: float, w: float = 60.0, h: float = 40.0) -> list[float]:
    """An xyxy box whose anchor (bottom-centre) is at pixel (x, y)."""
    return [x - w / 2, y - h, x + w / 2, y]


def box_centred(cx: float, cy: float, w: float, h: float) -> list[float]:
    """An xyxy box centred on pixel (cx, cy)."""
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def presence_checkpoint(folder: Path, bias: float) -> Path:
    """A truck-presence checkpoint whose classifier answers sigmoid(``bias``) for every cell."""
    import torch

    from truckcount.detector.presence import PresenceConfig, PresenceNet
    from truckcount.detector.weights import save_checkpoint
    from truckcount.types import CLASSES

    torch.manual_seed(0)
    net = PresenceNet(PresenceConfig())
    with torch.no_grad():
        net.head[1].weight.zero_()
        net.head[1].bias.fill_(bias)
    path = folder / f"presence{bias}.pt"
    state = {"kind": "presence", "model": net.state_dict(), "classes": [c.value for c in CLASSES]}
    save_checkpoint({**state, "model_config": net.cfg.to_dict()}, path)
    return path


class Outage:
    """A SQLite URL that cannot be opened (its folder is a file) until ``end()`` is called."""

    def __init__(self, tmp_path: Path) -> None:
        self.folder = tmp_path / "db"
        self.folder.write_text("not a folder")
        self.url = f"sqlite:///{self.folder / 'counts.db'}"
        self.spool = tmp_path / "spool"

    def end(self) -> None:
        self.folder.unlink()
        self.folder.mkdir()

    def engine(self) -> Engine:
        from truckcount.storage import open_database

        return open_database(self.url, create=False)


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as a module (the folder is not a package)."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
