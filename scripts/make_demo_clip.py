"""Rebuild a real traffic clip from the consecutive frames of one km39-cctv sequence.

The km39 images are 640x640, stretched from the camera's 16:9; each is resized back to 640x360.
A missing frame index is filled by repeating the previous frame, so frame ``i`` is always
presented at ``i / fps`` seconds and the clip's clock matches the burnt-in one.

Example:
    python scripts/make_demo_clip.py --data ../shared/data/km39-cctv --out demo/km39-siang.mp4
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt
from av.video.stream import VideoStream

logger = logging.getLogger("make_demo_clip")

Image = npt.NDArray[np.uint8]

COMMENT = (
    "km39-cctv frames from Roboflow-100 'vehicles' by Yudha Bhakti Nugraha and Kris, CC BY 4.0; "
    "see demo/ATTRIBUTION.md"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="km39-cctv dataset folder")
    parser.add_argument("--out", type=Path, default=Path("demo/km39-siang.mp4"), help="clip file")
    parser.add_argument("--sequence", default="siang_15112021_1", help="sequence name prefix")
    parser.add_argument("--fps", type=int, default=5, help="frame rate of the sequence")
    parser.add_argument("--size", type=_size, default="640x360", help="output WIDTHxHEIGHT")
    parser.add_argument("--crf", type=int, default=26, help="x264 quality (lower = bigger)")
    parser.add_argument(
        "--creation-time", default=None, help="UTC time of the first frame, for the mp4 header"
    )
    return parser.parse_args(argv)


def _size(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height


def find_frames(images: Path, sequence: str) -> dict[int, Path]:
    """Map frame index -> image file for one sequence (``<sequence>-<index>.jpg``)."""
    pattern = re.compile(rf"^{re.escape(sequence)}-(\d+)\.(jpg|jpeg|png)$", re.IGNORECASE)
    found = {}
    for path in images.iterdir():
        match = pattern.match(path.name)
        if match:
            found[int(match.group(1))] = path
    if not found:
        raise SystemExit(f"no images of sequence {sequence!r} in {images}")
    return found


def frames_with_gaps_filled(
    files: dict[int, Path], size: tuple[int, int]
) -> Iterator[tuple[int, Image]]:
    """Yield (index, BGR image) for every index from the first to the last, repeating frames."""
    first, last = min(files), max(files)
    previous = _load(files[first], size)  # the first index always exists
    for index in range(first, last + 1):
        path = files.get(index)
        if path is None:
            logger.info("frame %d missing: repeating frame %d", index, index - 1)
        else:
            previous = _load(path, size)
        yield index, previous


def _load(path: Path, size: tuple[int, int]) -> Image:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read image {path}")
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def encode(frames: Iterator[tuple[int, Image]], out: Path, args: argparse.Namespace) -> int:
    """Encode frames at exactly ``args.fps`` (pts = index - first index); returns the count."""
    fps, crf = args.fps, args.crf
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    options = {"crf": str(crf), "preset": "slow"} if codec == "libx264" else {"qscale": "5"}
    out.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with av.open(str(out), mode="w", container_options={"movflags": "+faststart"}) as container:
        container.metadata["comment"] = COMMENT
        if args.creation_time:
            container.metadata["creation_time"] = args.creation_time
        stream = container.add_stream(codec, rate=fps, options=options)
        assert isinstance(stream, VideoStream)
        stream.width, stream.height = args.size
        stream.pix_fmt = "yuv420p"
        time_base = Fraction(1, fps)
        first: int | None = None
        for index, image in frames:
            first = index if first is None else first
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = index - first
            frame.time_base = time_base
            container.mux(stream.encode(frame))
            count += 1
        container.mux(stream.encode())
    logger.info("wrote %s: %d frames, %s, %.1f MB", out, count, codec, out.stat().st_size / 1e6)
    return count


def check_timing(path: Path, fps: int, count: int) -> None:
    """Verify the first frame is presented at 0 s and the last at (count - 1) / fps."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.time_base is not None
        times = sorted(
            p.pts * stream.time_base for p in container.demux(stream) if p.pts is not None
        )
    expected_last = Fraction(count - 1, fps)
    if len(times) != count or times[0] != 0 or times[-1] != expected_last:
        raise SystemExit(
            f"{path}: expected {count} frames from 0 to {float(expected_last)} s, got "
            f"{len(times)} from {float(times[0])} to {float(times[-1])} s"
        )
    logger.info("timing ok: %d frames, first at 0 s, last at %.1f s", count, float(times[-1]))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    files = find_frames(args.data / "images", args.sequence)
    logger.info("%s: %d images, index %d..%d", args.sequence, len(files), min(files), max(files))
    frames = frames_with_gaps_filled(files, args.size)
    count = encode(frames, args.out, args)
    check_timing(args.out, args.fps, count)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
