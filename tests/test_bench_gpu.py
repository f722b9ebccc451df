"""The GPU benchmark runs end to end on the CPU, so it works the day a GPU is there to measure."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.helpers import load_benchmark


@pytest.mark.slow
def test_the_gpu_benchmark_reports_every_figure_and_the_same_counts_on_the_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "gpu.json"
    argv = ["bench_gpu.py", "--json", str(out), "--device", "cpu", "--seconds", "0.05"]
    monkeypatch.setattr(sys, "argv", [*argv, "--batches", "1,2"])
    assert load_benchmark("bench_gpu").main() == 0
    report = json.loads(out.read_text())
    assert report["environment"]["device"] == "cpu"
    assert {(r["batch"], r["precision"]) for r in report["network"]} == {
        (1, "fp32"),
        (1, "bf16"),
        (2, "fp32"),
        (2, "bf16"),
    }
    assert [r["batch"] for r in report["detector"]] == [2, 2]
    assert all(r["frames_per_s"] > 0 and r["ratio"] > 0 for r in report["detector"])
    counts = report["counts"]
    assert [c["device"] for c in counts] == ["cpu", "cpu", "cpu"]
    assert counts[0]["frames"] == 375 and counts[0]["counts"]["truck away_from_camera"] > 0
    # The same frames give the same crossings whatever the batch size.
    assert counts[0]["crossings"] == counts[1]["crossings"] == counts[2]["crossings"]
