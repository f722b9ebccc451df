"""Per-camera configuration: its source, clock, live-stream limits and counting lines."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ConfigDict, Field, field_validator, model_validator

from truckcount.config_base import StrictModel

LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "http", "https", "rtmp", "srt", "udp", "tcp"})
"""URL schemes read as live streams."""
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")

_TIME_PARTS = {
    "year (%Y or %y)": ("%Y", "%y"),
    "month (%m, %b or %B)": ("%m", "%b", "%B"),
    "day (%d)": ("%d",),
    "hour (%H, or %I with %p)": ("%H", "%I"),
}


def check_time_pattern(pattern: str) -> str:
    """A file-name pattern must name the date and hour of the first frame: a pattern without
    them would silently date every recording 1 January 1900 (or at midnight)."""
    missing = [what for what, codes in _TIME_PARTS.items() if not any(c in pattern for c in codes)]
    if missing:
        raise ValueError(
            f"pattern {pattern!r} lacks the {', '.join(missing)}: a recording's wall-clock "
            "start cannot be read from such a name (e.g. cam1_%Y%m%d_%H%M%S.mp4)"
        )
    return pattern


Point = Annotated[
    tuple[float, float],
    Field(description="(x, y) as fractions of the frame width and height, each in [0, 1]"),
]


class DirectionNames(StrictModel):
    """User names for the two ways of crossing a line."""

    in_: str = Field(
        "in",
        alias="in",
        min_length=1,
        description="name for crossing onto the right-hand side of A->B as drawn on the image",
    )
    out: str = Field("out", min_length=1, description="name for the opposite way")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


ZONE_MIN_AREA = 1e-9
"""Smallest origin-zone area (fraction of the frame) accepted; smaller polygons are degenerate."""


def polygon_area(points: tuple[tuple[float, float], ...]) -> float:
    """Unsigned area of a simple polygon (shoelace formula), in the units of its points squared."""
    twice = sum(
        x0 * y1 - x1 * y0
        for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1], strict=True)
    )
    return abs(twice) / 2


class LineConfig(StrictModel):
    """A counting line from point A to point B in normalised image coordinates."""

    id: str = Field("line", min_length=1, description="line id, unique within its camera")
    a: Point = Field((0.0, 0.6), description="start point A (x, y) in [0, 1]")
    b: Point = Field((1.0, 0.6), description="end point B (x, y) in [0, 1]")
    directions: DirectionNames = Field(
        default_factory=lambda: DirectionNames(), description="names of both crossing directions"
    )
    origin_zone: tuple[Point, ...] | None = Field(
        None,
        description="optional polygon (at least 3 normalised (x, y) points, area > 0): only tracks "
        "whose first box's bottom-centre lies inside it count on this line; None: every track",
    )

    @field_validator("a", "b")
    @classmethod
    def _inside_frame(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= c <= 1.0 for c in v):
            raise ValueError(f"expected coordinates in [0, 1], got {v}")
        return v

    @field_validator("origin_zone")
    @classmethod
    def _valid_zone(
        cls, v: tuple[tuple[float, float], ...] | None
    ) -> tuple[tuple[float, float], ...] | None:
        if v is None:
            return v
        if len(v) < 3:
            raise ValueError(f"expected at least 3 points, got {len(v)}")
        outside = [p for p in v if not all(0.0 <= c <= 1.0 for c in p)]
        if outside:
            raise ValueError(f"expected coordinates in [0, 1], got {outside[0]}")
        area = polygon_area(v)
        if area < ZONE_MIN_AREA:
            raise ValueError(f"expected a polygon with area > 0, got area {area:.3g}")
        return v

    @model_validator(mode="after")
    def _not_degenerate(self) -> LineConfig:
        if self.a == self.b:
            raise ValueError(f"line {self.id!r}: A and B are the same point {self.a}")
        return self


TimestampSource = Literal["start", "filename", "creation_time", "mtime"]
"""Where a recording's wall-clock start can come from (see ``CameraConfig.timestamps``)."""


class CameraConfig(StrictModel):
    """One camera (live stream or recordings) and its counting lines."""

    id: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9_.-]+$", description="camera id")
    source: str | None = Field(None, description="video file path or stream URL")
    timezone: str = Field("UTC", description="IANA time zone of the camera's local day")
    start: datetime | None = Field(
        None, description="wall-clock time of the first frame of a recording, ISO 8601 with offset"
    )
    analysis_fps: float = Field(5.0, gt=0, le=120, description="frames analysed per second")
    lines: tuple[LineConfig, ...] = Field(
        default_factory=lambda: (LineConfig(),), description="counting lines"
    )
    timestamps: tuple[TimestampSource, ...] = Field(
        ("start", "filename"),
        min_length=1,
        description="where a recording's first-frame time comes from, first that applies wins: "
        "start (this config or --start), filename (filename_pattern), creation_time (container "
        "tag), mtime (file modification time minus duration, with a warning)",
    )
    filename_pattern: str | None = Field(
        None,
        min_length=1,
        description="strptime pattern of recording file names in the camera's time zone "
        "(unless it has %z), e.g. cam1_%Y%m%d_%H%M%S.mp4",
    )
    transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP transport")
    input_format: str | None = Field(
        None,
        pattern=r"^[a-z0-9_,]+$",
        description="FFmpeg demuxer to force, e.g. mpjpeg (MJPEG over HTTP); /dev/video* uses v4l2",
    )
    open_timeout_s: float = Field(10.0, gt=0, le=300, description="live: give up connecting")
    read_timeout_s: float = Field(
        5.0, gt=0, le=300, description="live: a read that waits this long for data fails"
    )
    stall_timeout_s: float = Field(
        15.0,
        gt=0,
        le=3600,
        description="live watchdog: no frame for this long is an outage, even while the reader "
        "is stuck inside FFmpeg; the reader is then abandoned and the stream reopened",
    )
    reconnect_min_s: float = Field(0.5, gt=0, le=60, description="first reconnect delay")
    reconnect_max_s: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="reconnect delay cap (doubles per failure, +-20% jitter); also bounds how "
        "long a camera that is back waits to be reconnected",
    )
    queue_frames: int = Field(
        16,
        ge=1,
        le=10_000,
        description="frames held between reader and detector; when full a live camera drops the "
        "oldest (counted as frames_dropped), a file waits",
    )
    segment_seconds: float = Field(
        300.0,
        ge=1,
        le=86_400,
        description="live: a run is closed (and its counts become visible) this often",
    )

    @field_validator("source")
    @classmethod
    def _readable_scheme(cls, v: str | None) -> str | None:
        match = _URL.match(v or "")
        if match is not None and match.group(1).lower() not in LIVE_SCHEMES | {"file"}:
            accepted = ", ".join(sorted(LIVE_SCHEMES | {"file"}))
            raise ValueError(
                f"unsupported URL scheme {match.group(1)!r}: use a file path, /dev/videoN or "
                f"one of {accepted}"
            )
        return v

    @field_validator("filename_pattern")
    @classmethod
    def _dated_names(cls, v: str | None) -> str | None:
        return None if v is None else check_time_pattern(v)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {v!r}") from exc
        return v

    @field_validator("start")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.utcoffset() is None:
            raise ValueError(f"start {v.isoformat()} needs a UTC offset, e.g. +07:00")
        return v

    @model_validator(mode="after")
    def _live_limits(self) -> CameraConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError(
                f"camera {self.id!r}: reconnect_max_s {self.reconnect_max_s} is below "
                f"reconnect_min_s {self.reconnect_min_s}"
            )
        return self
