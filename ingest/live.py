"""Live sources (RTSP, HTTP(S) MJPEG and HLS, local ``/dev/videoN`` devices) opened with PyAV.

One call of ``read_stream`` is one connection: it yields frames until the stream ends or fails;
reconnecting is ``reader.CameraReader``'s job.

Capture time of a live frame comes from the *receive clock*: the process's UTC wall clock, read
once when the clock is made and advanced by the monotonic clock, so it never goes backwards when
NTP steps the system time. Within one connection frames keep the spacing of their presentation
timestamps (the camera's media clock), anchored to the receive time of the connection's first
frame; when media time and receive time disagree by more than ``LiveClock.tolerance_s`` (a camera
clock running fast, a timestamp jump) the anchor moves to the receive time of that frame. Network
and decode latency (usually well under a second) is not subtracted.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import av
import av.error
import numpy as np
from av.container import InputContainer

from truckcount.config import CameraConfig
from truckcount.config_camera import LIVE_SCHEMES
from truckcount.ingest.errors import SourceError, mask_url
from truckcount.ingest.files import MediaClock
from truckcount.ingest.sampling import FrameSampler
from truckcount.types import Frame

logger = logging.getLogger(__name__)

_DEVICE = re.compile(r"^/dev/video\d+$")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_LOOSE_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):/")
PROBE_US = 1_000_000
"""Microseconds of stream FFmpeg may read at connect to learn the codec parameters."""
PROBE_BYTES = 2_000_000
"""Bytes FFmpeg may read at connect to learn the codec parameters."""
MAX_BAD_PACKETS = 50
"""Consecutive packets the decoder may reject before the connection is given up."""


def is_live(source: str) -> bool:
    """True for a stream URL (rtsp, http(s), ...) or a ``/dev/videoN`` device.

    ``rtsp:/host/...`` counts too: that is what ``pathlib.Path`` makes of a URL.
    """
    match = _LOOSE_SCHEME.match(source)
    if match is not None:
        return match.group(1).lower() in LIVE_SCHEMES
    return _DEVICE.match(source) is not None


def stream_options(camera: CameraConfig) -> tuple[str | None, dict[str, str]]:
    """The FFmpeg demuxer (None: probe) and options that open the camera's source.

    RTSP gets the configured transport and a socket timeout; every network protocol gets an I/O
    timeout (``rw_timeout``), so a silent peer fails inside FFmpeg as well as in PyAV's own
    read timeout. That FFmpeg timeout is the larger of the open and read timeouts: a camera
    slow to start its stream (preparing media after PLAY) gets the whole open timeout. A
    ``/dev/videoN`` device is read with ``v4l2``.
    """
    source = camera.source or ""
    match = _SCHEME.match(source)
    scheme = match.group(1).lower() if match else ""
    # FFmpeg's socket timeout also bounds each step of the RTSP handshake, so it must allow the
    # open timeout; PyAV's own read timeout still ends a stalled read after ``read_timeout_s``.
    socket_s = max(camera.open_timeout_s, camera.read_timeout_s)
    micros = str(int(socket_s * 1_000_000))
    # Probing a second of stream is enough for H.264/MJPEG parameters; FFmpeg's default (5 s)
    # would buffer 5 s of frames at every connect and deliver them late, in one burst.
    options = {"analyzeduration": str(PROBE_US), "probesize": str(PROBE_BYTES)}
    if scheme in ("rtsp", "rtsps"):
        options |= {"rtsp_transport": camera.transport, "timeout": micros}
        options["allowed_media_types"] = "video"
    elif scheme:
        options["rw_timeout"] = micros
    if scheme in ("http", "https"):
        options |= {"reconnect": "0", "multiple_requests": "0"}
    fmt = camera.input_format
    if fmt is None and _DEVICE.match(source):
        fmt = "v4l2"
    return fmt, options


def open_stream(camera: CameraConfig) -> InputContainer:
    """Connect to the camera's live source, waiting at most ``open_timeout_s``.

    Raises:
        SourceError: the connection is refused or times out, or the peer sends no video; the
            message names the camera and the masked URL.
    """
    source = camera.source or ""
    name = mask_url(source)
    fmt, options = stream_options(camera)
    try:
        container = av.open(
            source,
            mode="r",
            format=fmt,
            options=options,
            timeout=(camera.open_timeout_s, camera.read_timeout_s),
        )
    except (av.error.FFmpegError, OSError) as exc:
        raise SourceError(f"camera {camera.id!r}: cannot open {name} ({_reason(exc)})") from exc
    if not container.streams.video:
        container.close()
        raise SourceError(f"camera {camera.id!r}: {name} carries no video stream")
    return container


class LiveClock:
    """Receive-clock timestamps for one camera's frames (see the module docstring).

    Args:
        tolerance_s: largest disagreement between media time and receive time kept before the
            anchor moves to the receive clock.
    """

    def __init__(self, tolerance_s: float = 2.0) -> None:
        self.tolerance_s = tolerance_s
        self._wall0 = datetime.now(UTC)
        self._mono0 = time.monotonic()
        self._anchor: tuple[Fraction, float] | None = None
        self._last = 0.0

    def received(self) -> datetime:
        """The receive clock now."""
        return self._at(time.monotonic() - self._mono0)

    def new_connection(self) -> None:
        """Forget the media-time anchor: a new connection's timestamps start afresh."""
        self._anchor = None

    def stamp(self, media_s: Fraction | None) -> datetime:
        """Capture time of a frame received now with this media time (None: unknown)."""
        recv = time.monotonic() - self._mono0
        t = recv
        if media_s is not None:
            if self._anchor is None or abs(self._from_anchor(media_s) - recv) > self.tolerance_s:
                self._anchor = (media_s, recv)
            t = self._from_anchor(media_s)
        self._last = max(self._last, t)
        return self._at(self._last)

    def _from_anchor(self, media_s: Fraction) -> float:
        assert self._anchor is not None
        anchor_media, anchor_recv = self._anchor
        return anchor_recv + float(media_s - anchor_media)

    def _at(self, seconds: float) -> datetime:
        return self._wall0 + timedelta(seconds=seconds)


def read_stream(
    container: InputContainer,
    camera: CameraConfig,
    clock: LiveClock,
    first_index: int = 0,
) -> Iterator[Frame]:
    """Decode one connection into frames sampled at ``camera.analysis_fps`` of media time.

    Media time is measured as for files (``files.MediaClock``: a frame without a timestamp is
    placed one nominal frame after the previous one), so a stream's frames keep the spacing the
    same video has offline. Timestamps that jump back by more than a second start a new media
    clock. Frames are stamped by ``clock``; ``index`` counts decoded frames from
    ``first_index``. Ends when the peer ends the stream.

    Raises:
        SourceError: the read times out, the connection breaks, or the decoder keeps failing.
    """
    stream = container.streams.video[0]
    rate = stream.guessed_rate or stream.average_rate
    fps = Fraction(rate) if rate else None
    name = mask_url(camera.source or "")
    media, sampler = MediaClock(stream.time_base, fps, name), FrameSampler(camera.analysis_fps)
    clock.new_connection()
    index = first_index
    for frame in _decode(container, camera):
        last = media.last
        t = media.seconds(frame.pts)
        if last is not None and t < last - 1:
            logger.info("camera %s: timestamps jumped back; new media clock", camera.id)
            media, sampler = (
                MediaClock(stream.time_base, fps, name),
                FrameSampler(camera.analysis_fps),
            )
            clock.new_connection()
            t = media.seconds(frame.pts)
        stamped = clock.stamp(t)
        if sampler.keep(t):
            image = np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8)
            yield Frame(camera.id, stamped, index, image)
        index += 1


def _decode(container: InputContainer, camera: CameraConfig) -> Iterator[av.VideoFrame]:
    stream = container.streams.video[0]
    name = mask_url(camera.source or "")
    bad = 0
    try:
        for packet in container.demux(stream):
            try:
                frames = stream.decode(packet)
            except av.error.FFmpegError as exc:
                bad += 1
                if bad >= MAX_BAD_PACKETS:
                    msg = f"camera {camera.id!r}: {name}: {bad} undecodable packets in a row"
                    raise SourceError(msg) from exc
                continue
            bad = 0
            yield from frames
    except (av.error.ExitError, TimeoutError) as exc:  # PyAV's read timeout, or FFmpeg's own
        msg = f"camera {camera.id!r}: {name}: no data for {camera.read_timeout_s:g} s"
        raise SourceError(msg) from exc
    except (av.error.FFmpegError, OSError) as exc:
        msg = f"camera {camera.id!r}: {name}: stream broke ({_reason(exc)})"
        raise SourceError(msg) from exc


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return mask_url(str(text))
