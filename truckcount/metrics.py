"""Prometheus metrics of the running service, defined once for every stage to increment.

The pipeline, the live camera runtime and the scheduled jobs import the objects below and count
what they do; ``GET /metrics`` exposes them. Everything is registered in prometheus-client's
default registry, once per process (importing this module twice does not re-register).

Label values are camera, line and job ids from the configuration, so the number of series is
bounded by the configuration, never by the data.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

FRAMES_READ = Counter(
    "truckcount_frames_read_total", "Frames decoded from a camera's source", ["camera"]
)
FRAMES_ANALYSED = Counter(
    "truckcount_frames_analysed_total", "Frames run through the detector", ["camera"]
)
FRAMES_DROPPED = Counter(
    "truckcount_frames_dropped_total",
    "Frames dropped because a bounded queue was full (live sources only)",
    ["camera"],
)
DETECTOR_BATCH_SIZE = Histogram(
    "truckcount_detector_batch_size",
    "Frames per detector forward pass",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
DETECTOR_LATENCY = Histogram(
    "truckcount_detector_latency_seconds",
    "Wall time of one detector forward pass (a whole batch)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CROSSINGS = Counter(
    "truckcount_crossings_total",
    "Line crossings recorded",
    ["camera", "line", "class_name", "direction"],
)
RECONNECTS = Counter(
    "truckcount_reconnects_total", "Times a live source was reopened after an outage", ["camera"]
)
LAST_FRAME = Gauge(
    "truckcount_last_frame_timestamp_seconds",
    "Capture time (Unix seconds) of the newest frame of a camera",
    ["camera"],
)
JOB_RUNS = Counter("truckcount_job_runs_total", "Scheduled job executions", ["job"])
JOB_FAILURES = Counter(
    "truckcount_job_failures_total", "Scheduled job executions that failed", ["job"]
)
JOB_DURATION = Histogram(
    "truckcount_job_duration_seconds",
    "Wall time of one scheduled job execution",
    ["job"],
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600),
)
RECORDINGS_PROCESSED = Counter(
    "truckcount_recordings_processed_total",
    "Recordings from the watch folder processed, by outcome",
    ["camera", "outcome"],
)


def exposition() -> tuple[bytes, str]:
    """The current metrics in the Prometheus text format, and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
