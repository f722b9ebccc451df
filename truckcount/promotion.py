"""Promote a model only if counting gets no worse: a candidate's count report against a baseline.

Both are ``truckcount eval counts`` reports (the baseline as ``--write-baseline`` wrote it). The
cells compared are one class's counts per validation sequence, line and direction (all sequences
when the reports name no roles). A candidate passes when no single cell's count error is worse
than the baseline's by more than the noise allowance ``max(1, ceil(share x true count))``, and,
summed over those cells, its event errors (crossings missed, double-counted, invented, or given
the wrong class or direction; ``aggregator.evaluate.event_errors``) are no more than the
baseline's. Summed count errors would reward errors that cancel: a double count next to a miss
is a count error of 0. Reports written before event errors were recorded are judged on the
summed absolute count error instead. Ground truth must be the same in both reports: a baseline
made on other labels, lines or sequences cannot judge the candidate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

DEFAULT_SHARE = 0.05
"""Per-cell noise allowance, as a share of the true count (at least one vehicle)."""


class BaselineMismatch(ValueError):
    """The baseline and the candidate were measured on different ground truth."""


@dataclass(frozen=True)
class CellComparison:
    """One sequence x line x direction cell of one class."""

    sequence: str
    line: str
    direction: str
    true: int
    baseline_error: int
    error: int
    allowed: int
    baseline_wrong: int | None = None
    wrong: int | None = None

    @property
    def regressed(self) -> bool:
        return abs(self.error) > self.allowed


@dataclass(frozen=True)
class Verdict:
    """Whether the candidate may be promoted, and why."""

    vehicle: str
    cells: tuple[CellComparison, ...]
    baseline_total: int
    candidate_total: int

    @property
    def by_events(self) -> bool:
        """Whether both reports carry event errors, which then decide instead of count errors."""
        return all(c.wrong is not None and c.baseline_wrong is not None for c in self.cells)

    @property
    def baseline_events(self) -> int:
        return sum(c.baseline_wrong or 0 for c in self.cells)

    @property
    def candidate_events(self) -> int:
        return sum(c.wrong or 0 for c in self.cells)

    @property
    def promote(self) -> bool:
        no_cell_worse = not any(c.regressed for c in self.cells)
        if self.by_events:
            no_worse = self.candidate_events <= self.baseline_events
        else:
            no_worse = self.candidate_total <= self.baseline_total
        return bool(self.cells) and no_cell_worse and no_worse

    def lines(self) -> list[str]:
        """A readable account: one line per cell, then the totals and the decision."""
        out = [
            f"{c.sequence} {c.line} {c.direction}: true {c.true}, error {c.error:+d} "
            f"(baseline {c.baseline_error:+d}, allowed |error| <= {c.allowed})"
            + ("  WORSE" if c.regressed else "")
            for c in self.cells
        ]
        out.append(
            f"{self.vehicle} absolute error summed over {len(self.cells)} cells: "
            f"{self.candidate_total} (baseline {self.baseline_total})"
        )
        if self.by_events:
            out.append(
                f"{self.vehicle} event errors (missed, double, extra, wrong class or direction) "
                f"summed: {self.candidate_events} (baseline {self.baseline_events}); these decide"
            )
        out.append(f"promote: {'yes' if self.promote else 'no'}")
        return out


def compare(
    candidate: dict[str, Any],
    baseline: dict[str, Any],
    vehicle: str = "truck",
    share: float = DEFAULT_SHARE,
) -> Verdict:
    """Judge ``candidate`` against ``baseline``; see the module docstring.

    Raises:
        BaselineMismatch: a cell's true count differs, or a validation cell of the baseline is
            missing from the candidate.
    """
    base = _cells(baseline, vehicle)
    cand = _cells(candidate, vehicle)
    cells = []
    for key, ref in sorted(base.items()):
        row = cand.get(key)
        if row is None:
            raise BaselineMismatch(f"the candidate has no {vehicle} count for {' '.join(key)}")
        if row["true"] != ref["true"]:
            raise BaselineMismatch(
                f"{' '.join(key)}: {row['true']} true {vehicle} crossings against the "
                f"baseline's {ref['true']}: it was measured on other labels, lines or frames"
            )
        noise = max(1, math.ceil(share * ref["true"]))
        cells.append(
            CellComparison(
                *key,
                ref["true"],
                ref["error"],
                row["error"],
                abs(ref["error"]) + noise,
                ref.get("event_errors"),
                row.get("event_errors"),
            )
        )
    return Verdict(
        vehicle,
        tuple(cells),
        sum(abs(c.baseline_error) for c in cells),
        sum(abs(c.error) for c in cells),
    )


def _cells(report: dict[str, Any], vehicle: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    roles = {s["name"]: s.get("role") for s in report.get("sequences", [])}
    validation = {name for name, role in roles.items() if role == "validation"}
    return {
        (r["sequence"], r["line"], r["direction"]): r
        for r in report["counts"]
        if r["class"] == vehicle and (not validation or r["sequence"] in validation)
    }
