"""The whole path on the bundled demo: shipped clip -> shipped model -> SQLite -> daily counts."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from truckcount.cli import app
from truckcount.config import load_config
from truckcount.storage import count_crossings, daily_counts, list_runs, open_database
from truckcount.storage.query import bucket_counts
from truckcount.types import VehicleClass

ROOT = Path(__file__).resolve().parent.parent
DEMO_CLIP = ROOT / "demo" / "km39-siang.mp4"
DEMO_CONFIG = ROOT / "demo" / "km39.yaml"

pytestmark = pytest.mark.slow


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """The demo config, writing to a database of this test's own."""
    text = DEMO_CONFIG.read_text()
    text = text.replace("sqlite:///demo.db", f"sqlite:///{tmp_path}/demo.db")
    text = text.replace("source: km39-siang.mp4", f"source: {DEMO_CLIP}")
    path = tmp_path / "km39.yaml"
    path.write_text(text)
    return path


def test_demo_counts_trucks_and_a_rerun_changes_nothing(config: Path) -> None:
    runner = CliRunner()
    args = ["run", str(DEMO_CLIP), "--camera", "km39", "--config", str(config)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    engine = open_database(load_config(config).storage.url, create=False)
    trucks = count_crossings(engine, "km39", VehicleClass.TRUCK)
    days = daily_counts(engine, "km39")
    assert trucks > 0
    assert {d.day for d in days} == {"2021-11-15"}, "the clip's local day in Asia/Jakarta"
    assert sum(d.count for d in days) == trucks
    shares = [b.truck_share for b in bucket_counts(engine, "km39", width="daily")]
    assert shares and shares[0] is not None and 0 < shares[0] <= 1, "share of frames with a truck"

    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert daily_counts(engine, "km39") == days
    assert count_crossings(engine, "km39", VehicleClass.TRUCK) == trucks
    runs = list_runs(engine, "km39")
    assert {r.run_id for r in runs} == {runs[0].run_id}, "same file, same model: the same run"
    assert len(runs) == 2, "attempted twice; the second attempt replaced the first"
    again = [b.truck_share for b in bucket_counts(engine, "km39", width="daily")]
    assert again == shares, "the rerun replaced the presence tallies, not added to them"

    printed = runner.invoke(app, ["counts", "--camera", "km39", "--config", str(config)])
    assert printed.exit_code == 0 and "2021-11-15" in printed.stdout
    assert str(trucks) in printed.stdout.splitlines()[-1]
    engine.dispose()
