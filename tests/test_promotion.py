"""The promotion gate: a candidate model's counts against the baseline's, cell by cell.

Each case is a table of truck cells (sequence, direction, true, baseline error, candidate error).
"""

from __future__ import annotations

from typing import Any

import pytest

from truckcount.promotion import BaselineMismatch, compare

Cell = tuple[str, str, int, int]  # sequence, direction, true, error


def report(
    cells: list[Cell], roles: dict[str, str] | None = None, wrong: list[int] | None = None
) -> dict[str, Any]:
    """A count report of these truck cells; ``wrong``: each cell's event errors (older reports
    have none)."""
    counts: list[dict[str, Any]] = [
        {"sequence": s, "line": "y60", "class": "truck", "direction": d, "true": t, "error": e}
        for s, d, t, e in cells
    ]
    for row, n in zip(counts, wrong or [], strict=False):
        row["event_errors"] = n
    counts += [{**c, "class": "car", "error": 9} for c in counts]  # other classes never judged
    sequences = [{"name": n, "role": r} for n, r in (roles or {}).items()]
    return {"counts": counts, "sequences": sequences}


ROLES = {"day": "validation", "night": "validation", "train": "training"}
BASE = [
    ("day", "in", 19, -6),
    ("day", "out", 30, -3),
    ("night", "out", 3, 0),
    ("train", "in", 14, 0),
]


@pytest.mark.parametrize(
    ("candidate", "promote", "worse"),
    [
        # the same errors: no worse (summed absolute error 9)
        ([-6, -3, 0, 0], True, []),
        # better by day, one off at night within the allowance max(1, ceil(5 % of 3)) = 1
        ([-5, -2, 1, 0], True, []),
        # every cell within its allowance, but summed error 11 > 9
        ([-7, -4, 0, 0], False, []),
        ([0, 0, 0, 0], True, []),
        # summed error 6 < 9, but day away is beyond |-3| + max(1, ceil(1.5)) = 5
        ([0, -6, 0, 0], False, ["day y60 out"]),
        # a training sequence is not judged, however wrong
        ([-6, -3, 0, 9], True, []),
    ],
)
def test_a_candidate_is_promoted_only_if_counting_is_no_worse(
    candidate: list[int], promote: bool, worse: list[str]
) -> None:
    cand = [(s, d, t, e) for (s, d, t, _), e in zip(BASE, candidate, strict=True)]
    verdict = compare(report(cand, ROLES), report(BASE, ROLES))
    assert verdict.promote is promote
    assert not verdict.by_events  # reports without event errors: the count errors decide
    assert [f"{c.sequence} {c.line} {c.direction}" for c in verdict.cells if c.regressed] == worse
    assert [c.sequence for c in verdict.cells] == ["day", "day", "night"]
    assert verdict.lines()[-1] == f"promote: {'yes' if promote else 'no'}"


def test_without_roles_every_sequence_is_judged() -> None:
    verdict = compare(report([("a", "in", 10, 3)]), report([("a", "in", 10, 0)]))
    assert not verdict.promote and verdict.cells[0].regressed  # 3 > 0 + 1


def test_other_ground_truth_cannot_judge() -> None:
    with pytest.raises(BaselineMismatch, match="day y60 in: 18 true truck crossings against the"):
        compare(report([("day", "in", 18, 0)]), report([("day", "in", 19, 0)]))
    with pytest.raises(BaselineMismatch, match="no truck count for night y60 in"):
        compare(
            report([("day", "in", 19, 0)]), report([("night", "in", 3, 0), ("day", "in", 19, 0)])
        )


def test_an_empty_baseline_promotes_nothing() -> None:
    assert not compare(report([("day", "in", 19, 0)]), report([])).promote


@pytest.mark.parametrize(
    ("candidate", "wrong", "promote"),
    [
        # the baseline's day error of -2 is a double count hiding one of three misses; the
        # candidate misses the same three and counts nothing twice: a larger summed count error
        # (6 against 5), fewer wrong crossings (6 against 8)
        ([-3, -3, 0], [3, 3, 0], True),
        # the same counts with more wrong crossings: refused
        ([-2, -3, 0], [5, 4, 0], False),
        # no wrong crossing, but day toward beyond |-2| + 1: refused whatever the events say
        ([-4, -3, 0], [0, 0, 0], False),
    ],
)
def test_event_errors_decide_when_both_reports_carry_them(
    candidate: list[int], wrong: list[int], promote: bool
) -> None:
    base = [("day", "in", 19, -2), ("day", "out", 30, -3), ("night", "out", 3, 0)]
    cand = [(s, d, t, e) for (s, d, t, _), e in zip(base, candidate, strict=True)]
    verdict = compare(report(cand, ROLES, wrong), report(base, ROLES, [4, 4, 0]))
    assert verdict.by_events and verdict.promote is promote
    assert verdict.baseline_events == 8 and verdict.candidate_events == sum(wrong)
    assert "these decide" in verdict.lines()[-2]


def test_a_baseline_without_event_errors_is_judged_on_count_errors() -> None:
    base = [("day", "in", 19, -2)]
    verdict = compare(report([("day", "in", 19, -3)], ROLES, [3]), report(base, ROLES))
    assert not verdict.by_events and not verdict.promote  # summed count error 3 > 2
