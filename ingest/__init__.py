"""Frame sources: video files (later live streams) -> timestamped ``Frame`` values.

Public API:
    open_source: a camera's configured source as frames sampled at its analysis rate.
    open_video: one video file as frames, stamped on the media clock.
    probe_video: a video file's size, frame rate, duration and creation time.
    mask_url: hide credentials in a source before logging it.
"""

from truckcount.ingest.errors import SourceError, mask_url
from truckcount.ingest.files import VideoInfo, open_video, probe_video
from truckcount.ingest.sampling import FrameSampler
from truckcount.ingest.source import is_url, open_source

__all__ = [
    "FrameSampler",
    "SourceError",
    "VideoInfo",
    "is_url",
    "mask_url",
    "open_source",
    "open_video",
    "probe_video",
]
