"""Line counting specifications as per-frame tables.

Frames are 640x360 at 10 fps (frame k at k * 0.1 s). The line "gate" runs from (64, 180) to
(576, 180) px, drawn left to right, so IN ("southbound") is downward. Hysteresis 0.01 x the
diagonal (734 px) is 7.3 px: a side is believed at y <= 172.6 or y >= 187.4.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tests.helpers import at, box_at, make_detections, make_frame
from truckcount.aggregator.lines import LineCounter
from truckcount.config import ConfigError, CounterConfig, DirectionNames, LineConfig, parse_config
from truckcount.types import Crossing, Direction, VehicleClass

TRUCK, BUS, CAR = VehicleClass.TRUCK, VehicleClass.BUS, VehicleClass.CAR
NAMES = DirectionNames(in_="southbound", out="northbound")
GATE = LineConfig(id="gate", a=(0.1, 0.5), b=(0.9, 0.5), directions=NAMES)
DT = 0.1

# One observation: (track_id, anchor x, anchor y, class, confidence).
Obs = tuple[int, float, float, VehicleClass, float]


def counter(lines: Sequence[LineConfig] = (GATE,), cfg: CounterConfig | None = None) -> LineCounter:
    return LineCounter(
        "cam",
        lines,
        cfg or CounterConfig(),
        model_version="test-model",
        run_id="run-1",
        track_timeout_s=1.0,
    )


def path(ys: Sequence[float], x: float = 320.0, track_id: int = 1) -> list[list[Obs]]:
    """One track per frame, anchor at (x, y)."""
    return [[(track_id, x, y, TRUCK, 0.9)] for y in ys]


def feed(lc: LineCounter, frames: Sequence[Sequence[Obs]], flush: bool = True) -> list[Crossing]:
    out: list[Crossing] = []
    for k, obs in enumerate(frames):
        dets = make_detections(
            xyxy=[box_at(x, y) for _, x, y, _, _ in obs],
            tracker_id=[o[0] for o in obs],
            class_id=[o[3] for o in obs],
            confidence=[o[4] for o in obs],
        )
        out += lc.update(make_frame(k * DT), dets)
    return out + lc.flush() if flush else out


def summary(crossings: Sequence[Crossing]) -> list[tuple[str, int]]:
    """(direction name, frame index of the decision) for each crossing."""
    return [(c.direction_name, round((c.ts - at(0)).total_seconds() / DT)) for c in crossings]


@pytest.mark.parametrize(
    "ys, expected",
    [
        pytest.param([150, 160, 170, 190, 200], [("southbound", 3)], id="down"),
        pytest.param([210, 200, 190, 170, 160], [("northbound", 3)], id="up"),
        pytest.param([150, 176, 183, 177, 184, 178, 186], [], id="jitter-never-across"),
        pytest.param([150, 176, 183, 177, 184, 178, 195, 200], [("southbound", 6)], id="jitter"),
        pytest.param([150, 200, 150, 200, 150], [("southbound", 1)], id="back-and-forth"),
        pytest.param(
            [150, 170, 190, 183, 178, 185, 176, 195], [("southbound", 2)], id="jitter-after"
        ),
        pytest.param([150, 170, *[180] * 20, 200], [("southbound", 22)], id="stops-on-line"),
        pytest.param([150, 170, *[190] * 20], [("southbound", 2)], id="stops-past-line"),
        pytest.param([180, 181, 179, 200, 210], [], id="starts-on-line"),
        pytest.param([150, 170, 185, 186, 187], [], id="stops-inside-band"),
        pytest.param([150, 200], [], id="short-track"),
        pytest.param([150, 200, 210], [("southbound", 1)], id="min-frames"),
    ],
)
def test_one_track_crossing_a_line(ys: list[float], expected: list[tuple[str, int]]) -> None:
    crossings = feed(counter(), path(ys))
    assert summary(crossings) == expected
    for c in crossings:
        assert (c.camera_id, c.line_id, c.track_id) == ("cam", "gate", 1)
        assert (c.model_version, c.run_id, c.class_name) == ("test-model", "run-1", TRUCK)
        assert c.direction is (Direction.IN if c.direction_name == "southbound" else Direction.OUT)


@pytest.mark.parametrize(
    "a, b, xs, direction",
    [
        pytest.param((0.5, 0.1), (0.5, 0.9), [300, 310, 330, 340], Direction.OUT, id="down-ltr"),
        pytest.param((0.5, 0.1), (0.5, 0.9), [340, 330, 310, 300], Direction.IN, id="down-rtl"),
        pytest.param((0.5, 0.9), (0.5, 0.1), [300, 310, 330, 340], Direction.IN, id="up-ltr"),
        pytest.param((0.9, 0.5), (0.1, 0.5), [300] * 4, Direction.OUT, id="horizontal-rtl"),
    ],
)
def test_direction_is_the_side_of_the_directed_line(
    a: tuple[float, float], b: tuple[float, float], xs: list[float], direction: Direction
) -> None:
    """IN = onto the right-hand side of A->B on the image (y down), whatever the line's angle."""
    line = LineConfig(id="gate", a=a, b=b, directions=NAMES)
    ys = [150, 170, 190, 200]  # used when the line is horizontal; x moves otherwise
    frames = [[(1, x, y if a[1] == b[1] else 250, TRUCK, 0.9)] for x, y in zip(xs, ys, strict=True)]
    (crossing,) = feed(counter([line]), frames)
    assert crossing.direction is direction


@pytest.mark.parametrize(
    "points, count",
    [
        pytest.param([(30, 150), (30, 170), (30, 190), (30, 200)], 0, id="left-of-A"),
        pytest.param([(600, 150), (600, 170), (600, 190), (600, 200)], 0, id="right-of-B"),
        pytest.param([(70, 150), (70, 170), (70, 190), (70, 200)], 1, id="just-inside-A"),
        pytest.param([(40, 150), (50, 170), (60, 190), (70, 210)], 0, id="diagonal-misses"),
        pytest.param([(60, 150), (65, 170), (70, 190), (75, 210)], 1, id="diagonal-hits"),
    ],
)
def test_only_the_segment_counts_not_its_extension(
    points: list[tuple[float, float]], count: int
) -> None:
    frames = [[(1, x, y, TRUCK, 0.9)] for x, y in points]
    assert len(feed(counter(), frames)) == count


@pytest.mark.parametrize(
    "k, emitted",
    [
        (4, 0),  # decided at frame 2 (y=190), last seen at frame 3 (t=0.3 s)
        (12, 0),  # 0.9 s unseen
        (13, 0),  # 1.0 s unseen: not yet more than track_timeout_s
        (14, 1),  # 1.1 s unseen: the track has ended, its crossing is emitted now
        (20, 0),
    ],
)
def test_track_vanishing_after_crossing_is_emitted_at_timeout(k: int, emitted: int) -> None:
    lc = counter()
    frames = path([150, 170, 190, 200]) + [[] for _ in range(17)]
    out = feed(lc, frames[:k], flush=False)
    got = lc.update(make_frame(k * DT), make_detections(tracker_id=[]))
    assert len(got) == emitted
    if got:
        assert got[0].ts == at(0.2)  # decided on frame 2 (y=190), not when emitted
        assert len(lc) == 0  # state freed
    assert len(out) + len(got) <= 1


def test_track_vanishing_after_crossing_is_emitted_at_flush() -> None:
    lc = counter()
    assert feed(lc, path([150, 170, 190]), flush=False) == []
    assert len(lc) == 1
    assert summary(lc.flush()) == [("southbound", 2)]
    assert len(lc) == 0
    assert lc.flush() == []


def test_two_lines_each_count_once_in_time_order() -> None:
    upper = LineConfig(id="upper", a=(0.1, 0.4), b=(0.9, 0.4))  # y = 144 px
    lower = LineConfig(id="lower", a=(0.1, 0.6), b=(0.9, 0.6))  # y = 216 px
    crossings = feed(counter([lower, upper]), path([120, 140, 160, 190, 220, 240]))
    assert [(c.line_id, c.ts) for c in crossings] == [("upper", at(0.2)), ("lower", at(0.5))]


def test_untracked_boxes_are_never_counted() -> None:
    lc = counter()
    for k, y in enumerate([150, 170, 190, 200]):
        assert lc.update(make_frame(k * DT), make_detections(xyxy=[box_at(320, y)])) == []
    assert len(lc) == 0
    assert lc.flush() == []


@pytest.mark.parametrize(
    "classes, scores, expected_class, expected_conf",
    [
        pytest.param([CAR, TRUCK, TRUCK, TRUCK], [0.9, 0.6, 0.7, 0.8], TRUCK, 0.7, id="majority"),
        pytest.param([TRUCK, CAR, CAR, TRUCK, CAR], [0.9] * 5, CAR, 0.9, id="last-not-used"),
        pytest.param([CAR, TRUCK, CAR, TRUCK], [0.5, 0.9, 0.5, 0.9], TRUCK, 0.9, id="tie-score"),
        pytest.param([BUS, BUS, BUS, CAR], [0.4, 0.6, 0.5, 0.9], BUS, 0.5, id="bus"),
    ],
)
def test_class_is_the_vote_over_the_whole_track(
    classes: list[VehicleClass],
    scores: list[float],
    expected_class: VehicleClass,
    expected_conf: float,
) -> None:
    ys = [150, 170, 190, 200, 210][: len(classes)]
    frames = [[(1, 320.0, y, c, s)] for y, c, s in zip(ys, classes, scores, strict=True)]
    (crossing,) = feed(counter(), frames)
    assert crossing.class_name is expected_class
    assert crossing.confidence == pytest.approx(expected_conf, abs=1e-6)


def test_only_configured_classes_are_recorded() -> None:
    cfg = CounterConfig(classes=(TRUCK,))
    frames = [
        [(1, 320.0, y, c, 0.9)] for y, c in zip([150, 170, 190], [TRUCK, CAR, CAR], strict=True)
    ]
    assert feed(counter(cfg=cfg), frames) == []


@pytest.mark.parametrize(
    "switch_at, counted_ids",
    [
        pytest.param(2, [2], id="switch-well-before-line"),  # id 1 too short and never crossed
        pytest.param(5, [], id="switch-on-line"),  # y=180: neither id saw both sides
        pytest.param(6, [], id="switch-entering-far-side"),  # id 2 starts at 190, no prior side
        pytest.param(7, [1], id="switch-just-after"),  # id 1 decided at 190 (frame 6)
        pytest.param(9, [1], id="switch-well-after"),  # id 2 only saw the far side
    ],
)
def test_id_switch_next_to_the_line(switch_at: int, counted_ids: list[int]) -> None:
    """An ID switch never double counts; inside the hysteresis band it loses the vehicle."""
    ys = [130, 140, 150, 160, 170, 180, 190, 200, 210, 220]
    frames = [[(1 if k < switch_at else 2, 320.0, y, TRUCK, 0.9)] for k, y in enumerate(ys)]
    assert [c.track_id for c in feed(counter(), frames)] == counted_ids


def test_two_trucks_side_by_side_count_twice() -> None:
    frames = [
        [(1, 200.0, y, TRUCK, 0.9), (2, 300.0, y + 2, TRUCK, 0.8)] for y in [150, 170, 190, 200]
    ]
    crossings = feed(counter(), frames)
    assert sorted((c.track_id, c.ts) for c in crossings) == [(1, at(0.2)), (2, at(0.2))]


def test_crossings_of_tracks_ending_together_are_sorted_by_time() -> None:
    late = [150, 155, 160, 165, 170, 190, 200]  # decided at frame 5
    early = [150, 170, 190, 200, 200, 200, 200]  # decided at frame 2
    frames = [
        [(1, 200.0, a, TRUCK, 0.9), (2, 400.0, b, TRUCK, 0.9)]
        for a, b in zip(late, early, strict=True)
    ]
    crossings = feed(counter(), frames)
    assert [(c.track_id, c.ts) for c in crossings] == [(2, at(0.2)), (1, at(0.5))]


def test_state_is_freed_when_tracks_end() -> None:
    lc = counter()
    frames = [[(i, 50.0 * i, 150.0 + 10 * k, TRUCK, 0.9) for i in range(1, 10)] for k in range(6)]
    feed(lc, frames, flush=False)
    assert len(lc) == 9
    lc.update(make_frame(2.0), make_detections(tracker_id=[]))
    assert len(lc) == 0


# The yard: the lower-right quarter below the gate, x in [320, 640] and y in [216, 360] px.
YARD = ((0.5, 0.6), (1.0, 0.6), (1.0, 1.0), (0.5, 1.0))
EXIT = GATE.model_copy(update={"origin_zone": YARD})


@pytest.mark.parametrize(
    "points, expected",
    [
        pytest.param(
            [(400, 250), (400, 190), (400, 170), (400, 150)], [("northbound", 2)], id="born-inside"
        ),
        pytest.param([(200, 250), (200, 190), (200, 170), (200, 150)], [], id="born-outside-left"),
        pytest.param([(400, 200), (400, 190), (400, 170), (400, 150)], [], id="born-outside-above"),
        pytest.param(
            [(400, 216), (400, 190), (400, 170), (400, 150)], [("northbound", 2)], id="born-on-edge"
        ),
        pytest.param(
            [(400, 300), (250, 200), (200, 170), (200, 150)],
            [("northbound", 2)],
            id="leaves-zone-first",
        ),
        pytest.param([(200, 250), (400, 250), (400, 170), (400, 150)], [], id="enters-zone-later"),
        pytest.param(
            [(400, 250), (400, 170), (400, 150), (400, 200), (400, 260)],
            [("northbound", 1)],
            id="first-crossing-kept",
        ),
        pytest.param([(400, 150), (400, 170), (400, 190), (400, 250)], [], id="entering-the-yard"),
    ],
)
def test_origin_zone_counts_only_tracks_born_inside(
    points: list[tuple[float, float]], expected: list[tuple[str, int]]
) -> None:
    """Trucks leaving a yard: only the anchor of the track's first box decides, not later ones."""
    frames = [[(1, x, y, TRUCK, 0.9)] for x, y in points]
    assert summary(feed(counter([EXIT]), frames)) == expected


@pytest.mark.parametrize(
    "start_x, expected",
    [
        pytest.param(400, [("exit", 2), ("road", 5)], id="born-inside-counts-on-both"),
        pytest.param(200, [("road", 5)], id="born-outside-counts-on-road-only"),
    ],
)
def test_origin_zone_affects_only_its_own_line(
    start_x: float, expected: list[tuple[str, int]]
) -> None:
    exit_line = EXIT.model_copy(update={"id": "exit"})
    road = LineConfig(id="road", a=(0.1, 0.3), b=(0.9, 0.3))  # y = 108 px, no zone
    frames = path([250, 200, 170, 150, 120, 100, 90], x=start_x)
    crossings = feed(counter([exit_line, road]), frames)
    assert [(c.line_id, round((c.ts - at(0)).total_seconds() / DT)) for c in crossings] == expected


@pytest.mark.parametrize(
    "zone, message",
    [
        pytest.param(
            [(0.5, 0.6), (1.0, 0.6)], r"expected at least 3 points, got 2", id="two-points"
        ),
        pytest.param(
            [(0.5, 0.6), (1.2, 0.6), (1.0, 1.0)],
            r"expected coordinates in \[0, 1\], got \(1\.2, 0\.6\)",
            id="outside-frame",
        ),
        pytest.param([(-0.1, 0.6), (1.0, 0.6), (1.0, 1.0)], r"got \(-0\.1, 0\.6\)", id="negative"),
        pytest.param(
            [(0.0, 0.0), (0.5, 0.5), (1.0, 1.0)],
            r"expected a polygon with area > 0, got area 0",
            id="collinear",
        ),
        pytest.param([(0.5, 0.5)] * 4, r"area > 0", id="one-point-repeated"),
    ],
)
def test_origin_zone_is_validated(zone: list[tuple[float, float]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LineConfig(id="exit", origin_zone=tuple(zone))
    raw = {"cameras": [{"id": "cam", "lines": [{"id": "exit", "origin_zone": zone}]}]}
    with pytest.raises(ConfigError, match=r"cameras\.0\.lines\.0\.origin_zone: .*" + message):
        parse_config(raw)


def test_origin_zone_is_optional_and_read_from_yaml_lists() -> None:
    raw = {"cameras": [{"id": "cam", "lines": [{"origin_zone": [[0.5, 0.6], [1, 0.6], [1, 1]]}]}]}
    (line,) = parse_config(raw).cameras[0].lines
    assert line.origin_zone == ((0.5, 0.6), (1.0, 0.6), (1.0, 1.0))
    assert LineConfig().origin_zone is None


def test_rejects_another_cameras_frame_and_bad_lines() -> None:
    with pytest.raises(ValueError, match="unique line ids"):
        counter([GATE, GATE])
    with pytest.raises(ValueError, match="at least one"):
        counter([])
    with pytest.raises(ValueError, match="'other'"):
        counter().update(make_frame(0.0, camera_id="other"), make_detections())
