"""Count accuracy: predicted crossings against ground-truth crossings.

Crossings are matched per sequence, line and direction within a time window (Hungarian on time
difference, position along the line and class agreement). What is left is explained:

* ``wrong_direction``: a predicted crossing that matches a true one of the *other* direction;
* ``double_count``: an extra predicted crossing close in time and place to a matched one
  (an ID switch or a vehicle split into two boxes);
* ``extra``: any other predicted crossing (a false detection that became a track);
* ``miss``: a true crossing nothing explains.

Counts are compared per sequence x line x class x direction; a count can be right while its
crossings are not (a miss and an extra cancel), which the matching shows.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from pydantic import Field
from scipy.optimize import linear_sum_assignment

from truckcount.aggregator.lines import LineCounter
from truckcount.config import LineConfig, StrictModel
from truckcount.types import CLASSES, Crossing, Detections, Direction, Frame, VehicleClass

_GATED = 1e6


class MatchConfig(StrictModel):
    """How predicted crossings are paired with true ones."""

    window_s: float = Field(1.0, gt=0, description="largest time difference of a match")
    max_offset: float = Field(
        0.15, gt=0, le=1, description="largest difference of position along the line (fraction)"
    )
    offset_weight: float = Field(2.0, ge=0, description="cost per line length of position error")
    class_penalty: float = Field(0.5, ge=0, description="cost of a class disagreement")
    double_window_s: float = Field(
        2.0, gt=0, description="an extra crossing this close in time to a matched one..."
    )
    double_offset: float = Field(
        0.1, gt=0, le=1, description="...and this close along the line is a double count"
    )


@dataclass(frozen=True)
class CrossingPoint:
    """A crossing placed in time and along its line, for matching.

    Attributes:
        sequence: the sequence (clip) it happened in.
        line_id: the line crossed.
        direction: way of crossing.
        direction_name: the line's name for that way.
        class_name: vehicle class (track vote).
        ts: capture time of the deciding frame.
        t: seconds from the sequence's start.
        u: position along the line A->B, 0 at A and 1 at B.
        track_id: track (predicted or ground-truth) that crossed.
    """

    sequence: str
    line_id: str
    direction: Direction
    direction_name: str
    class_name: VehicleClass
    ts: datetime
    t: float
    u: float
    track_id: int

    def as_dict(self, fps: float | None = None) -> dict[str, object]:
        """JSON-ready fields; ``frame`` (the deciding frame index) when ``fps`` is given."""
        out: dict[str, object] = {
            "sequence": self.sequence,
            "line": self.line_id,
            "direction": self.direction_name,
            "class": self.class_name.value,
            "ts": self.ts.isoformat(),
            "t": round(self.t, 3),
            "u": round(self.u, 3),
            "track_id": self.track_id,
        }
        if fps is not None:
            out["frame"] = round(self.t * fps)
        return out


class AnchorLog:
    """Where each track's anchor was on each frame, to place its crossings along the line."""

    def __init__(self) -> None:
        self._anchors: dict[tuple[int, datetime], tuple[float, float]] = {}

    def record(self, frame: Frame, dets: Detections) -> None:
        """Remember the normalised anchors of the tracked boxes of ``frame``."""
        if dets.tracker_id is None:
            return
        w, h = frame.size
        for tid, (x, y) in zip(dets.tracker_id, dets.anchors(), strict=True):
            self._anchors[(int(tid), frame.ts)] = (float(x) / w, float(y) / h)

    def place(
        self,
        crossings: Iterable[Crossing],
        lines: Sequence[LineConfig],
        sequence: str,
        t0: datetime,
    ) -> list[CrossingPoint]:
        """Turn crossings into points: time from ``t0`` and position along their line."""
        by_id = {ln.id: ln for ln in lines}
        out = []
        for c in crossings:
            line = by_id[c.line_id]
            p = np.array(self._anchors.get((c.track_id, c.ts), (np.nan, np.nan)))
            a, b = np.array(line.a), np.array(line.b)
            out.append(
                CrossingPoint(
                    sequence=sequence,
                    line_id=c.line_id,
                    direction=c.direction,
                    direction_name=c.direction_name,
                    class_name=c.class_name,
                    ts=c.ts,
                    t=(c.ts - t0).total_seconds(),
                    u=float(np.dot(p - a, b - a) / np.dot(b - a, b - a)),
                    track_id=c.track_id,
                )
            )
        return sorted(out, key=lambda p: (p.t, p.line_id, p.track_id))


class RecordingCounter(LineCounter):
    """A ``LineCounter`` that also logs every tracked anchor (evaluation only: grows per frame)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Same arguments as ``LineCounter``."""
        super().__init__(*args, **kwargs)
        self.anchors = AnchorLog()

    @classmethod
    def like(cls, counter: LineCounter) -> RecordingCounter:
        """A fresh counter with the same lines, rules and stamps as ``counter``."""
        return cls(
            counter.camera_id,
            counter.lines,
            counter.cfg,
            model_version=counter.model_version,
            run_id=counter.run_id,
            track_timeout_s=counter.track_timeout_s,
            classifier=counter.classifier,
        )

    def update(self, frame: Frame, dets: Detections) -> list[Crossing]:
        self.anchors.record(frame, dets)
        return super().update(frame, dets)


@dataclass
class MatchResult:
    """Outcome of matching predicted crossings to true ones.

    Attributes:
        matched: (true, predicted) pairs of the same direction.
        wrong_direction: (true, predicted) pairs of opposite directions.
        double_counts: predicted crossings repeating a matched one.
        extras: predicted crossings of nothing.
        misses: true crossings not predicted.
    """

    matched: list[tuple[CrossingPoint, CrossingPoint]] = field(default_factory=list)
    wrong_direction: list[tuple[CrossingPoint, CrossingPoint]] = field(default_factory=list)
    double_counts: list[CrossingPoint] = field(default_factory=list)
    extras: list[CrossingPoint] = field(default_factory=list)
    misses: list[CrossingPoint] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        """How many crossings fell in each outcome."""
        return {
            "matched": len(self.matched),
            "class_disagreements": sum(t.class_name != p.class_name for t, p in self.matched),
            "misses": len(self.misses),
            "double_counts": len(self.double_counts),
            "wrong_direction": len(self.wrong_direction),
            "extras": len(self.extras),
        }


def match_cost(
    true: Sequence[CrossingPoint], pred: Sequence[CrossingPoint], cfg: MatchConfig
) -> np.ndarray:
    """Cost of pairing each true crossing (rows) with each predicted one; ``>= 1e6``: forbidden.

    ``|dt| + offset_weight * |du| + class_penalty * (classes differ)`` within ``window_s`` and
    ``max_offset``; a crossing without a known position (``u`` NaN) is matched on time only.
    """
    tt = np.array([c.t for c in true], np.float64)[:, None]
    pt = np.array([c.t for c in pred], np.float64)[None, :]
    du = np.abs(np.array([c.u for c in true])[:, None] - np.array([c.u for c in pred])[None, :])
    du = np.nan_to_num(du, nan=0.0)
    same = np.array([[a.class_name == b.class_name for b in pred] for a in true], bool)
    dt = np.abs(tt - pt)
    cost = dt + cfg.offset_weight * du + cfg.class_penalty * (~same).reshape(dt.shape)
    allowed = (dt <= cfg.window_s) & (du <= cfg.max_offset)
    return np.where(allowed, cost, _GATED)


def _pair(
    true: Sequence[CrossingPoint], pred: Sequence[CrossingPoint], cfg: MatchConfig
) -> list[tuple[int, int]]:
    if not true or not pred:
        return []
    cost = match_cost(true, pred, cfg)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if cost[r, c] < _GATED]


def match_crossings(
    true: Sequence[CrossingPoint], pred: Sequence[CrossingPoint], cfg: MatchConfig | None = None
) -> MatchResult:
    """Match predicted to true crossings per (sequence, line, direction) and explain the rest."""
    cfg = cfg or MatchConfig()
    result = MatchResult()
    keys = sorted({(c.sequence, c.line_id) for c in (*true, *pred)})
    for key in keys:
        t_all = [c for c in true if (c.sequence, c.line_id) == key]
        p_all = [c for c in pred if (c.sequence, c.line_id) == key]
        _match_line(t_all, p_all, cfg, result)
    return result


def _match_line(
    true: list[CrossingPoint], pred: list[CrossingPoint], cfg: MatchConfig, result: MatchResult
) -> None:
    t_left, p_left, matched = list(true), list(pred), []
    for direction in Direction:
        t_dir = [c for c in t_left if c.direction is direction]
        p_dir = [c for c in p_left if c.direction is direction]
        matched += [(t_dir[i], p_dir[j]) for i, j in _pair(t_dir, p_dir, cfg)]
    t_left = [c for c in t_left if all(c is not m[0] for m in matched)]
    p_left = [c for c in p_left if all(c is not m[1] for m in matched)]
    wrong = []
    for direction in Direction:
        t_dir = [c for c in t_left if c.direction is direction]
        p_other = [c for c in p_left if c.direction is not direction]
        wrong += [(t_dir[i], p_other[j]) for i, j in _pair(t_dir, p_other, cfg)]
    t_left = [c for c in t_left if all(c is not w[0] for w in wrong)]
    p_left = [c for c in p_left if all(c is not w[1] for w in wrong)]
    for p in p_left:
        target = result.double_counts if _repeats(p, matched, cfg) else result.extras
        target.append(p)
    result.matched += matched
    result.wrong_direction += wrong
    result.misses += t_left


def _repeats(
    p: CrossingPoint, matched: Sequence[tuple[CrossingPoint, CrossingPoint]], cfg: MatchConfig
) -> bool:
    """Whether ``p`` crosses the same way close in time and place to an already matched crossing."""
    for _, q in matched:
        near_u = np.isnan(p.u - q.u) or abs(p.u - q.u) <= cfg.double_offset
        if q.direction is p.direction and abs(p.t - q.t) <= cfg.double_window_s and near_u:
            return True
    return False


@dataclass(frozen=True)
class CountRow:
    """True and predicted counts of one sequence x line x class x direction cell."""

    sequence: str
    line_id: str
    class_name: VehicleClass
    direction_name: str
    true: int
    pred: int
    wrong: int = 0
    """Crossings of this cell matched wrongly or not at all (``event_errors``)."""

    @property
    def error(self) -> int:
        """Predicted minus true: positive = over-counted."""
        return self.pred - self.true

    def as_dict(self) -> dict[str, object]:
        rel = None if self.true == 0 else round(abs(self.error) / self.true, 4)
        return {
            "sequence": self.sequence,
            "line": self.line_id,
            "class": self.class_name.value,
            "direction": self.direction_name,
            "true": self.true,
            "pred": self.pred,
            "error": self.error,
            "abs_pct_error": rel,
            "event_errors": self.wrong,
        }


CellKey = tuple[str, str, VehicleClass, str]  # sequence, line, class, direction name


def _cell(c: CrossingPoint) -> CellKey:
    return (c.sequence, c.line_id, c.class_name, c.direction_name)


def event_errors(result: MatchResult) -> Counter[CellKey]:
    """Per cell, the crossings it got wrong: its true crossings missed or matched with another
    class or direction, and its predicted ones that repeat a matched crossing, match nothing, or
    carry a class or direction the true one does not. A count error hides errors that cancel (a
    double count next to a miss is a count error of 0); these do not."""
    wrong: Counter[CellKey] = Counter()
    for t, p in result.matched + result.wrong_direction:
        if _cell(t) != _cell(p):
            wrong[_cell(t)] += 1
            wrong[_cell(p)] += 1
    for c in result.misses + result.double_counts + result.extras:
        wrong[_cell(c)] += 1
    return wrong


def count_table(
    true: Iterable[CrossingPoint],
    pred: Iterable[CrossingPoint],
    sequences: Sequence[str],
    lines: Sequence[LineConfig],
    wrong: Mapping[CellKey, int] | None = None,
) -> list[CountRow]:
    """Every sequence x line x class x direction cell, zeros included; ``wrong``: each cell's
    event errors (``event_errors``)."""
    tally: dict[CellKey, list[int]] = defaultdict(lambda: [0, 0])
    for k, points in enumerate((true, pred)):
        for c in points:
            tally[_cell(c)][k] += 1
    rows = []
    for seq in sequences:
        for ln in lines:
            for cls in CLASSES:
                for name in (ln.directions.in_, ln.directions.out):
                    key = (seq, ln.id, cls, name)
                    t, p = tally.get(key, (0, 0))
                    rows.append(CountRow(*key, t, p, (wrong or {}).get(key, 0)))
    return rows


def count_errors(rows: Iterable[CountRow]) -> dict[str, float | int | None]:
    """MAE over the cells, and MAPE over the cells with a non-zero true count."""
    rows = list(rows)
    errors = [abs(r.error) for r in rows]
    rel = [abs(r.error) / r.true for r in rows if r.true > 0]
    return {
        "cells": len(rows),
        "true": sum(r.true for r in rows),
        "pred": sum(r.pred for r in rows),
        "mae": round(float(np.mean(errors)), 4) if errors else None,
        "mape": round(float(np.mean(rel)), 4) if rel else None,
    }


def grouped_errors(
    rows: Sequence[CountRow], groups: Mapping[str, Sequence[str]]
) -> dict[str, dict[str, dict[str, float | int | None]]]:
    """``count_errors`` per group of sequences, for all classes and for each class."""
    out: dict[str, dict[str, dict[str, float | int | None]]] = {}
    for name, seqs in groups.items():
        in_group = [r for r in rows if r.sequence in seqs]
        out[name] = {"all": count_errors(in_group)}
        for cls in CLASSES:
            out[name][cls.value] = count_errors(r for r in in_group if r.class_name is cls)
    return out
