"""Recorded video files as timestamped frames, decoded with PyAV (FFmpeg).

A frame's time is its presentation timestamp (``pts * time_base``, exact fractions) relative to
the stream's first decoded frame, added to the wall-clock time of that first frame. Frame
counters and nominal frame rates are never used for time, so 29.97 fps and variable frame rates
keep their true clock.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np
from av.container import InputContainer
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from truckcount.ingest.errors import SourceError, mask_url
from truckcount.ingest.sampling import EARLY_FRACTION, EARLY_MAX_S, FrameSampler, to_timedelta
from truckcount.types import Frame

logger = logging.getLogger(__name__)

MAX_BAD_PACKETS = 50
"""Consecutive packets the decoder may reject before the file is given up as unreadable."""
MAX_PACKET_WARNINGS = 5
"""Damaged packets reported one by one; the rest are summed up when the file ends."""
SHORT_SLACK_S = Fraction(1, 2)
"""How much earlier than the container's duration the last frame may end without a warning."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video file's container says about its first video stream.

    Attributes:
        path: the file.
        codec: decoder name, e.g. ``h264``.
        width: frame width in pixels.
        height: frame height in pixels.
        fps: nominal frame rate as an exact fraction (30000/1001), None when unknown.
        duration_s: duration in seconds, None when the container does not say.
        frame_count: number of frames from the container, else estimated from duration and fps.
        creation_time: the container's ``creation_time`` tag (UTC), None without one. It is often
            the time the file was written, not when the first frame was captured.
    """

    path: Path
    codec: str
    width: int
    height: int
    fps: Fraction | None
    duration_s: float | None
    frame_count: int | None
    creation_time: datetime | None


def probe_video(path: Path) -> VideoInfo:
    """Read a video file's header without decoding frames.

    Args:
        path: video file.

    Returns:
        Size, frame rate, duration and creation time of its first video stream.

    Raises:
        SourceError: the file is missing, is not a video or has no video stream.
    """
    path = Path(path)
    with _open_container(path) as container:
        return _describe(path, container, _video_stream(container, path))


def open_video(
    path: Path, *, camera_id: str, start: datetime, analysis_fps: float
) -> Iterator[Frame]:
    """Decode a video file into frames stamped with their capture time.

    The header is read at once, so a missing file, a non-video or a file without a video stream
    fails here, before any model is loaded; decoding starts when iteration begins.

    A frame is kept when its presentation time reaches the next sample time
    ``k / analysis_fps`` (see ``FrameSampler``); frames that are not kept are decoded but never
    converted to images. A source slower than ``analysis_fps`` has every frame kept.

    Damaged packets are skipped with a warning naming the file, as long as the decoder recovers.
    A file that ends earlier than its container says (a truncated recording whose index
    survived) yields the frames it has, then logs a warning. A truncated MP4 whose index (moov
    atom) is lost cannot be read at all and raises ``SourceError``.

    Args:
        path: video file.
        camera_id: id put on every frame.
        start: timezone-aware wall-clock time of the first frame.
        analysis_fps: frames per second of media time to keep, > 0.

    Returns:
        Iterator of ``Frame`` with ``ts`` in UTC, ``index`` counting every decoded frame, and a
        BGR uint8 image.

    Raises:
        ValueError: ``start`` is naive or ``analysis_fps`` is not positive.
        SourceError: at once when the file is missing, is not a video or has no video stream;
            during iteration when no frame can be decoded or the decoder keeps failing.
    """
    if start.utcoffset() is None:
        raise ValueError(f"start: expected a timezone-aware datetime, got naive {start!r}")
    sampler = FrameSampler(analysis_fps)
    info = probe_video(path)
    _log_opened(camera_id, info, sampler)
    return _read_frames(info, camera_id, start.astimezone(UTC), sampler)


def _read_frames(
    info: VideoInfo, camera_id: str, start: datetime, sampler: FrameSampler
) -> Iterator[Frame]:
    name = mask_url(str(info.path))
    with _open_container(info.path) as container:
        stream = _video_stream(container, info.path)
        stream.thread_type = "AUTO"
        clock = MediaClock(stream.time_base, info.fps, name)
        skipper = NonRefSkipper.for_stream(stream, info.fps, sampler.rate)
        decoded = kept = 0
        for frame in _decode(container, stream, name, skipper):
            t = clock.seconds(frame.pts)
            index = decoded + (skipper.skipped_before(frame.pts) if skipper else 0)
            if sampler.keep(t):
                image = np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8)
                yield Frame(camera_id, start + to_timedelta(t), index, image)
                kept += 1
            decoded += 1
        _check_complete(info, clock.last, name)
        skipped = skipper.skipped if skipper else 0
        msg = "%s: done, %d frames decoded, %d left undecoded, %d analysed"
        logger.info(msg, name, decoded, skipped, kept)


class NonRefSkipper:
    """Lets the decoder drop non-reference frames (``skip_frame = NONREF``) that no sample needs.

    Packets arrive in decode order with their presentation time. A frame at media time ``t`` can
    only be kept by the sampler when a sample time lies in ``(t - gap + early, t + early]``,
    ``gap`` being the distance to the previous frame; with ``gap`` taken as 1.5 nominal frame
    intervals, every packet outside that window is sent with NONREF set, so the decoder drops it
    if no other frame refers to it (B-frames, mostly). The kept frames, their timestamps and their
    indices (counted over every frame of the stream, skipped ones included) are those of a full
    decode; a variable-rate gap longer than 1.5 intervals may move a sample to a later frame.
    """

    GAP_INTERVALS = Fraction(3, 2)

    def __init__(self, stream: VideoStream, fps: Fraction, rate: Fraction) -> None:
        self._ctx = stream.codec_context
        self._time_base = stream.time_base
        self._rate = rate
        self._early = min(EARLY_FRACTION / rate, EARLY_MAX_S)
        self._window = self.GAP_INTERVALS / fps
        self._origin: int | None = None
        self._candidates: list[int] = []
        self._skipping = False
        self.skipped = 0
        """Frames the decoder dropped so far (known once a later frame comes out)."""

    @classmethod
    def for_stream(
        cls, stream: VideoStream, fps: Fraction | None, rate: Fraction
    ) -> NonRefSkipper | None:
        """A skipper when the stream is timed and analysed at most at half its frame rate."""
        if fps is None or stream.time_base is None or rate * 2 > fps:
            return None
        return cls(stream, fps, rate)

    def before(self, packet: av.Packet) -> None:
        """Set the decoder's skip mode for this packet."""
        pts = packet.pts
        skip = self._origin is not None and pts is not None and not self._needed(pts)
        if skip != self._skipping:
            self._ctx.skip_frame = "NONREF" if skip else "DEFAULT"
            self._skipping = skip
        if skip and pts is not None:
            heapq.heappush(self._candidates, pts)

    def _needed(self, pts: int) -> bool:
        assert self._origin is not None and self._time_base is not None
        reach = (pts - self._origin) * self._time_base + self._early
        latest_sample = math.floor(reach * self._rate) / self._rate
        return latest_sample > reach - self._window

    def skipped_before(self, pts: int | None) -> int:
        """Frames dropped before the frame presented at ``pts`` (frames come in pts order)."""
        if pts is None:
            return self.skipped
        if self._origin is None:
            self._origin = pts
        while self._candidates and self._candidates[0] < pts:
            heapq.heappop(self._candidates)
            self.skipped += 1
        if self._candidates and self._candidates[0] == pts:
            heapq.heappop(self._candidates)  # it was a reference frame, decoded after all
        return self.skipped


class MediaClock:
    """Presentation time of each decoded frame in exact seconds after the first frame.

    A frame without a timestamp (raw elementary streams) is placed one nominal frame interval
    after the previous one.

    Args:
        time_base: seconds per pts tick of the stream.
        fps: nominal frame rate, used only for frames without a timestamp.
        name: the source, for messages.
    """

    def __init__(self, time_base: Fraction | None, fps: Fraction | None, name: str) -> None:
        self._time_base = time_base
        self._step = 1 / fps if fps else None
        self._name = name
        self._origin: Fraction | None = None
        self.last: Fraction | None = None
        """Time of the latest frame, None before the first."""

    def seconds(self, pts: int | None) -> Fraction:
        """Seconds from the first frame to the frame with this pts."""
        if pts is not None and self._time_base is not None:
            stamped = pts * self._time_base
            if self._origin is None:
                # the first stamped frame anchors the clock (after any unstamped ones)
                self._origin = stamped - self._following()
            t = stamped - self._origin
        else:
            t = self._following()
        self.last = t
        return t

    def _following(self) -> Fraction:
        """One nominal frame interval after the latest frame; 0 for the first frame."""
        if self.last is None:
            return Fraction(0)
        if self._step is None:
            raise SourceError(
                f"{self._name}: frames carry no timestamps and no frame rate is known"
            )
        return self.last + self._step


def _open_container(path: Path) -> InputContainer:
    name = mask_url(str(path))
    if not path.exists():
        raise SourceError(f"{name}: no such file")
    if not path.is_file():
        raise SourceError(f"{name}: not a regular file")
    try:
        return av.open(str(path), mode="r")
    except av.error.FFmpegError as exc:
        msg = f"{name}: not a video file, or damaged or truncated ({_reason(exc)})"
        raise SourceError(msg) from exc


def _video_stream(container: InputContainer, path: Path) -> VideoStream:
    if not container.streams.video:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
        raise SourceError(f"{mask_url(str(path))}: no video stream (streams found: {kinds})")
    return container.streams.video[0]


def _describe(path: Path, container: InputContainer, stream: VideoStream) -> VideoInfo:
    fps = stream.guessed_rate or stream.average_rate
    duration = _duration(container, stream)
    frames = stream.frames or (round(duration * fps) if duration and fps else None)
    return VideoInfo(
        path=path,
        codec=stream.codec_context.name,
        width=stream.codec_context.width,
        height=stream.codec_context.height,
        fps=Fraction(fps) if fps else None,
        duration_s=float(duration) if duration is not None else None,
        frame_count=frames,
        creation_time=_creation_time(container.metadata) or _creation_time(stream.metadata),
    )


def _duration(container: InputContainer, stream: VideoStream) -> Fraction | None:
    if stream.duration and stream.time_base:
        return stream.duration * stream.time_base
    if container.duration:
        return Fraction(container.duration, av.time_base)
    return None


def _creation_time(metadata: dict[str, str]) -> datetime | None:
    raw = metadata.get("creation_time")
    if not raw:
        return None
    try:
        ts = datetime.fromisoformat(raw)
    except ValueError:
        logger.debug("ignoring unparsable creation_time %r", raw)
        return None
    # FFmpeg writes creation_time in UTC
    return ts.replace(tzinfo=UTC) if ts.utcoffset() is None else ts.astimezone(UTC)


def _decode(
    container: InputContainer,
    stream: VideoStream,
    name: str,
    skipper: NonRefSkipper | None = None,
) -> Iterator[VideoFrame]:
    """Decoded frames in presentation order; damaged packets are skipped and counted.

    With a ``skipper``, packets no sample needs are sent with ``skip_frame = NONREF``.
    """
    bad_in_row = bad_total = 0
    try:
        for packet in container.demux(stream):
            if skipper is not None:
                skipper.before(packet)
            try:
                frames = stream.decode(packet)
            except av.error.FFmpegError as exc:
                bad_in_row += 1
                bad_total += 1
                _warn_bad_packet(name, packet.pts, packet.time_base, exc, bad_total)
                if bad_in_row >= MAX_BAD_PACKETS:
                    msg = (
                        f"{name}: decoder failed on {bad_in_row} packets in a row ({_reason(exc)})"
                    )
                    raise SourceError(msg) from exc
                continue
            bad_in_row = 0
            yield from frames
    except av.error.FFmpegError as exc:
        raise SourceError(f"{name}: cannot read the file further ({_reason(exc)})") from exc
    if bad_total > MAX_PACKET_WARNINGS:
        logger.warning("%s: skipped %d damaged packets in all", name, bad_total)


def _warn_bad_packet(
    name: str, pts: int | None, time_base: Fraction | None, exc: Exception, count: int
) -> None:
    if count > MAX_PACKET_WARNINGS:
        return
    where = f"{float(pts * time_base):.3f} s" if pts is not None and time_base else "unknown time"
    logger.warning(
        "%s: skipped a damaged packet at %s (%s); decoding continues", name, where, _reason(exc)
    )


def _check_complete(info: VideoInfo, last: Fraction | None, name: str) -> None:
    if last is None:
        raise SourceError(f"{name}: no video frame could be decoded")
    if info.duration_s is None:
        return
    step = 1 / info.fps if info.fps else Fraction(0)
    slack = max(SHORT_SLACK_S, 2 * step)
    if last + slack < Fraction(info.duration_s):
        logger.warning(
            "%s: the last frame is at %.2f s but the container says %.2f s; "
            "the file may be truncated or damaged",
            name,
            float(last),
            info.duration_s,
        )


def _log_opened(camera_id: str, info: VideoInfo, sampler: FrameSampler) -> None:
    fps = f"{float(info.fps):.3f}" if info.fps else "unknown"
    duration = f"{info.duration_s:.1f} s" if info.duration_s is not None else "unknown length"
    logger.info(
        "camera %s: reading %s (%s %dx%d, %s fps, %s), analysing %.3f fps",
        camera_id,
        mask_url(str(info.path)),
        info.codec,
        info.width,
        info.height,
        fps,
        duration,
        float(sampler.rate),
    )


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc)
