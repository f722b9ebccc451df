"""Frame sources: video files, live streams and devices -> timestamped ``Frame`` values.

Public API:
    open_source: a camera's configured source as frames sampled at its analysis rate.
    open_video: one video file as frames, stamped on the media clock.
    probe_video: a video file's size, frame rate, duration and creation time.
    recording_start: a recording's first-frame time by the camera's ``timestamps`` priority.
    is_live: whether a source is a stream URL or a ``/dev/videoN`` device.
    CameraReader, FileReader: a source read on its own thread into a bounded ``FrameQueue``,
        live ones with reconnection and a watchdog; ``Batcher`` gathers them for the detector.
    mask_url: hide credentials in a source before logging it.
"""

from truckcount.ingest.batcher import Batcher
from truckcount.ingest.errors import SourceError, mask_url
from truckcount.ingest.files import VideoInfo, open_video, probe_video
from truckcount.ingest.live import is_live
from truckcount.ingest.queues import FrameQueue, Outage, SourceEnded
from truckcount.ingest.reader import CameraReader, FileReader
from truckcount.ingest.sampling import FrameSampler
from truckcount.ingest.source import is_url, open_source
from truckcount.ingest.timestamps import RecordingStart, recording_start

__all__ = [
    "Batcher",
    "CameraReader",
    "FileReader",
    "FrameQueue",
    "FrameSampler",
    "Outage",
    "RecordingStart",
    "SourceEnded",
    "SourceError",
    "VideoInfo",
    "is_live",
    "is_url",
    "mask_url",
    "open_source",
    "open_video",
    "probe_video",
    "recording_start",
]
