"""Read ahead: decode the next frames in a background thread while the detector runs.

Decoding (FFmpeg) and inference (ONNX Runtime / torch kernels) both release the GIL, so a
recording's decoder can fill a small bounded buffer while the current batch is being detected,
instead of the two taking turns. The buffer is bounded (no frame is dropped: the reader waits),
errors reach the consumer as they were raised, and stopping early stops and closes the reader.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar, cast

T = TypeVar("T")

_POLL_S = 0.1
_JOIN_S = 5.0


def read_ahead(items: Iterable[T], depth: int) -> Iterator[T]:
    """Yield ``items`` in order, produced by a background thread at most ``depth`` ahead."""
    buffer: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=max(depth, 1))
    stop = threading.Event()

    def put(entry: tuple[str, object]) -> bool:
        while not stop.is_set():
            try:
                buffer.put(entry, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def fill() -> None:
        source = iter(items)
        try:
            for item in source:
                if not put(("item", item)):
                    return
            put(("end", None))
        except BaseException as exc:  # handed to the consumer, raised there
            put(("error", exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=fill, name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = buffer.get()
            if kind == "end":
                return
            if kind == "error":
                assert isinstance(value, BaseException)
                raise value
            yield cast(T, value)
    finally:
        stop.set()
        thread.join(timeout=_JOIN_S)  # a live source may block until its next frame
