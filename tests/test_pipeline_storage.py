"""What a run leaves in storage: one coverage span for the analysed video, and its availability."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import cast

import pytest
from sqlalchemy import select

from tests.helpers import T0, make_frame
from truckcount.config import AppConfig, CameraConfig, DetectorConfig
from truckcount.detector.infer import Detector
from truckcount.pipeline import _record_run
from truckcount.storage import RunStatus, list_runs, open_database
from truckcount.storage.models import CoverageRow
from truckcount.storage.writer import StorageWriter
from truckcount.types import Detections, Frame, RunInfo


class NoVehicles:
    """A detector stand-in that sees an empty road."""

    cfg = DetectorConfig(batch_size=4)

    def predict(self, frames: Sequence[Frame]) -> list[Detections]:
        return [Detections.empty() for _ in frames]


class Broken(NoVehicles):
    def predict(self, frames: Sequence[Frame]) -> list[Detections]:
        raise RuntimeError("GPU fell off")


@pytest.mark.parametrize("detector", [NoVehicles(), Broken()], ids=["complete", "failed"])
def test_a_run_records_its_coverage_only_when_complete(tmp_path: Path, detector: object) -> None:
    camera = CameraConfig(id="cam", timezone="UTC", analysis_fps=5.0)
    cfg = AppConfig(cameras=(camera,))
    url = f"sqlite:///{tmp_path}/c.db"
    writer = StorageWriter(url)
    run = RunInfo("r1", "cam", "a.mp4", "m1", "cfg", T0)
    frames = [make_frame(i / 5, "cam", index=i) for i in range(50)]  # 10 s at 5 fps
    work = (frames, cast(Detector, detector))
    if isinstance(detector, Broken):
        with pytest.raises(RuntimeError):
            _record_run(writer, cfg, camera, run, work)
    else:
        _record_run(writer, cfg, camera, run, work)
    writer.close()
    engine = open_database(url, create=False)
    with engine.connect() as conn:
        spans = [(r.start, r.end, r.frames_analysed) for r in conn.execute(select(CoverageRow))]
    [stored] = list_runs(engine)
    engine.dispose()
    if isinstance(detector, Broken):
        assert (stored.status, stored.available_at, spans) == (RunStatus.FAILED, None, [])
    else:
        assert spans == [(T0, T0 + timedelta(seconds=10), 50)]
        assert stored.status is RunStatus.COMPLETE and stored.available_at is not None
