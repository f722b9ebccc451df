"""Reading ahead keeps order, loses nothing, passes errors on and stops its reader early."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from truckcount.ingest.readahead import read_ahead


def test_every_item_arrives_in_order() -> None:
    assert list(read_ahead(range(1000), depth=3)) == list(range(1000))


def test_the_reader_never_runs_more_than_depth_ahead() -> None:
    produced: list[int] = []

    def source() -> Iterator[int]:
        for i in range(100):
            produced.append(i)
            yield i

    it = read_ahead(source(), depth=4)
    assert next(it) == 0
    threading.Event().wait(0.3)  # give the reader time to run ahead as far as it may
    assert len(produced) <= 1 + 4 + 1  # the consumed one, the buffer, one waiting to be put
    it.close()


def test_an_error_in_the_reader_reaches_the_consumer_after_the_good_items() -> None:
    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("corrupt packet in clip.mp4")

    got: list[int] = []
    with pytest.raises(ValueError, match=r"clip\.mp4"):
        for item in read_ahead(source(), depth=2):
            got.append(item)
    assert got == [1, 2]


def test_stopping_early_closes_the_source() -> None:
    closed = threading.Event()

    def source() -> Iterator[int]:
        try:
            yield from range(10_000)
        finally:
            closed.set()

    it = read_ahead(source(), depth=2)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()
    assert closed.wait(2.0), "the reader closed its source when the consumer stopped"
