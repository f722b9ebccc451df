"""Live-ingest parts without a network: queues, batcher, back-off, receive clock, options."""

from __future__ import annotations

import random
import threading
import time
from datetime import timedelta
from fractions import Fraction
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers import make_frame
from truckcount.cli import app
from truckcount.config import CameraConfig
from truckcount.ingest import SourceError, open_source
from truckcount.ingest.batcher import Batcher
from truckcount.ingest.live import LiveClock, is_live, stream_options
from truckcount.ingest.queues import FrameQueue, Outage, SourceEnded
from truckcount.ingest.reader import backoff_delay
from truckcount.types import Frame


def queue(cam: str, capacity: int, cond: threading.Condition, drop: bool = True) -> FrameQueue:
    return FrameQueue(cam, capacity, drop_oldest=drop, cond=cond)


def ts_of(items: list) -> list[float]:
    return [
        round((i.ts - make_frame(0).ts).total_seconds(), 3) for i in items if isinstance(i, Frame)
    ]


def test_a_full_live_queue_drops_the_oldest_frame_and_counts_it() -> None:
    q = queue("a", 3, threading.Condition())
    outage = Outage("a", make_frame(0).ts, "down")
    for item in [
        make_frame(0, "a"),
        outage,
        make_frame(1, "a"),
        make_frame(2, "a"),
        make_frame(3, "a"),
        make_frame(4, "a"),
    ]:
        assert q.put(item)
    with q.cond:
        items = [q.pop() for _ in range(len(q))]
    assert ts_of(items) == [2.0, 3.0, 4.0] and q.dropped == 2
    assert outage in items, "events are never dropped"


def test_a_full_file_queue_makes_the_reader_wait_and_drops_nothing() -> None:
    cond = threading.Condition()
    q = queue("f", 2, cond, drop=False)
    q.put(make_frame(0, "f"))
    q.put(make_frame(1, "f"))
    done = threading.Event()

    def put_then_mark_done() -> None:
        q.put(make_frame(2, "f"))
        done.set()

    threading.Thread(target=put_then_mark_done, daemon=True).start()
    assert not done.wait(0.3), "put waits while the queue is full"
    with cond:
        q.pop()
    assert done.wait(2) and q.dropped == 0 and q.frames == 2


def test_a_closed_queue_refuses_and_wakes_a_waiting_reader() -> None:
    q = queue("f", 1, threading.Condition(), drop=False)
    q.put(make_frame(0, "f"))
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(q.put(make_frame(1, "f"))))
    t.start()
    q.close()
    t.join(2)
    assert result == [False]


@pytest.mark.parametrize(
    ("waiting", "max_batch", "expected"),
    [
        # per camera, the media seconds of waiting frames -> cameras of the batch, in order
        ({"a": [0, 1, 2, 3], "b": [0], "c": [0, 1]}, 4, ["a", "b", "c", "a"]),
        ({"a": [0, 1, 2, 3], "b": [], "c": [0]}, 8, ["a", "c", "a", "a", "a"]),
        ({"a": [0], "b": [0], "c": [0]}, 2, ["a", "b"]),
    ],
)
def test_batches_take_cameras_round_robin(waiting: dict, max_batch: int, expected: list) -> None:
    cond = threading.Condition()
    queues = [queue(cam, 10, cond) for cam in waiting]
    for q in queues:
        for t in waiting[q.camera_id]:
            q.put(make_frame(t, q.camera_id))
    batch = Batcher(queues, cond, max_batch, max_wait_s=0).next_batch(timeout_s=1)
    assert [f.camera_id for f in batch] == expected


def test_a_partial_batch_waits_at_most_max_wait_and_events_keep_their_place() -> None:
    cond = threading.Condition()
    a = queue("a", 10, cond)
    batcher = Batcher([a], cond, max_batch=8, max_wait_s=0.3)
    a.put(make_frame(0, "a"))
    t0 = time.monotonic()
    assert len(batcher.next_batch(timeout_s=1)) == 1
    assert 0.25 <= time.monotonic() - t0 < 1.0
    ended = SourceEnded("a")
    a.put(make_frame(1, "a"))
    a.put(ended)
    t0 = time.monotonic()
    batch = batcher.next_batch(timeout_s=1)
    assert batch[-1] is ended and time.monotonic() - t0 < 0.2, "an event does not wait"
    assert batcher.next_batch(timeout_s=0.05) == []


@pytest.mark.parametrize(
    ("failures", "low", "high"),
    [(1, 0.4, 0.6), (2, 0.8, 1.2), (3, 1.6, 2.4), (4, 3.2, 4.8), (5, 4.0, 6.0), (50, 4.0, 6.0)],
)
def test_backoff_doubles_up_to_the_cap_with_jitter(failures: int, low: float, high: float) -> None:
    cam = CameraConfig(id="c", reconnect_min_s=0.5, reconnect_max_s=5.0)
    rng = random.Random(0)
    delays = [backoff_delay(failures, cam, rng) for _ in range(200)]
    assert low <= min(delays) and max(delays) <= high
    assert max(delays) - min(delays) > (high - low) / 2, "jitter spreads reconnects"


def test_receive_clock_keeps_media_spacing_and_never_goes_back() -> None:
    clock = LiveClock(tolerance_s=2.0)
    first = clock.stamp(Fraction(100))
    second = clock.stamp(Fraction(100) + Fraction(1001, 30000))
    assert (second - first).total_seconds() == pytest.approx(1001 / 30000, abs=1e-6)
    jumped_back = clock.stamp(Fraction(0))  # the camera's timestamps restart
    assert jumped_back >= second, "re-anchored to the receive clock, clamped: never backwards"
    clock.new_connection()
    assert clock.stamp(Fraction(5)) >= jumped_back
    unknown = clock.stamp(None)
    assert clock.received() - unknown < timedelta(seconds=2.0), "within tolerance of receipt"


@pytest.mark.parametrize(
    ("source", "live"),
    [
        ("rtsp://cam/stream", True),
        ("RTSPS://cam/stream", True),
        ("https://cam/video.mjpg", True),
        ("http://cdn/live/index.m3u8", True),
        ("/dev/video0", True),
        ("/dev/video", False),
        ("/data/cam1_20240601.mp4", False),
        ("file:///data/a.mp4", False),
    ],
)
def test_which_sources_are_live(source: str, live: bool) -> None:
    assert is_live(source) is live


def test_stream_options_carry_transport_timeouts_and_demuxer() -> None:
    rtsp = CameraConfig(
        id="c", source="rtsp://u:p@cam/s", transport="udp", read_timeout_s=2.5, open_timeout_s=2
    )
    fmt, opts = stream_options(rtsp)
    assert fmt is None and opts["rtsp_transport"] == "udp" and opts["timeout"] == "2500000"
    slow_start = rtsp.model_copy(update={"open_timeout_s": 8.0})
    assert stream_options(slow_start)[1]["timeout"] == "8000000", "the open timeout is allowed"
    mjpeg = CameraConfig(id="c", source="http://cam/video", input_format="mpjpeg")
    fmt, opts = stream_options(mjpeg)
    assert fmt == "mpjpeg" and opts["rw_timeout"] == "10000000"  # open 10 s, read 5 s
    assert stream_options(CameraConfig(id="c", source="/dev/video2"))[0] == "v4l2"


def test_an_unreachable_stream_fails_fast_without_leaking_credentials() -> None:
    cam = CameraConfig(id="c", source="rtsp://admin:secret@127.0.0.1:1/live", open_timeout_s=2)
    with pytest.raises(SourceError, match="cannot open") as err:
        open_source(cam)
    assert "secret" not in str(err.value) and "rtsp://***@127.0.0.1:1/live" in str(err.value)


def test_reconnect_limits_are_checked() -> None:
    with pytest.raises(ValueError, match=r"reconnect_max_s 1\.0 is below reconnect_min_s 2\.0"):
        CameraConfig(id="c", reconnect_min_s=2.0, reconnect_max_s=1.0)


def test_run_sends_streams_to_the_live_command_and_live_needs_a_source(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["run", "rtsp://u:secret@cam/s", "--camera", "c"])
    assert result.exit_code == 1 and "use `truckcount live`" in result.output
    assert "secret" not in result.output
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("cameras: [{id: cam}]\n")
    result = runner.invoke(app, ["live", "--config", str(cfg)])
    assert result.exit_code == 1 and "no camera with a `source`" in result.output
