"""``truckcount backfill``: count every recording in some folders, once, on one machine or many.

A file is a recording of camera ``C`` when its name matches ``C``'s ``filename_pattern`` or the
service's ``watch_pattern`` (the watch folder's rule), which also gives its first frame's time.
Files that already have a complete run by the same model are skipped, so a backfill that stopped
half way simply runs again, and one with a new model counts everything again as a new vintage.
``--shard K/N`` keeps the files whose name hashes to share ``K`` of ``N``: N machines (or N jobs
of a cluster's job array) with the same config and database split the files between them without
talking to each other, and each file is counted by exactly one.
A recording that cannot be read is reported by name and the others go on; the command then exits
non-zero.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from truckcount.config import AppConfig
from truckcount.detector.infer import Detector
from truckcount.ingest import SourceError
from truckcount.ingest.errors import first_line
from truckcount.pipeline import run_recording
from truckcount.service_watch import Recording, match_recording
from truckcount.storage import RunStatus, list_runs, open_database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shard:
    """Share ``index`` (0-based) of ``count`` equal shares of the files."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"K/N"`` with 1 <= K <= N, as a user writes it (1-based)."""
        k, sep, n = text.partition("/")
        if not (sep and k.strip().isdigit() and n.strip().isdigit()):
            raise ValueError(f"--shard {text!r}: expected K/N, e.g. 2/4")
        index, count = int(k) - 1, int(n)
        if not 0 <= index < count:
            raise ValueError(f"--shard {text!r}: K must be between 1 and N")
        return cls(index, count)

    def holds(self, name: str) -> bool:
        """Whether the file called ``name`` belongs to this share (same answer on any machine)."""
        return zlib.crc32(name.encode()) % self.count == self.index


@dataclass(frozen=True)
class BackfillReport:
    """What a backfill did: file names by outcome, and failed files with the reason."""

    processed: tuple[str, ...]
    already_done: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]
    other_shards: int
    unmatched: tuple[str, ...]


@dataclass(frozen=True)
class Selection:
    """The recordings of a shard, oldest first, and what was left out."""

    recordings: tuple[Recording, ...]
    other_shards: int
    unmatched: tuple[str, ...]


def find_recordings(paths: Iterable[Path], cfg: AppConfig, shard: Shard) -> Selection:
    """The recordings among ``paths`` (files, or folders whose files are taken) in ``shard``;
    a file whose name matches no camera's pattern is listed as unmatched."""
    found: list[Recording] = []
    other, unmatched = 0, []
    for path in _files(paths):
        matched = match_recording(path.name, cfg.cameras, cfg.service.watch_pattern)
        if matched is None:
            unmatched.append(path.name)
        elif not shard.holds(path.name):
            other += 1
        else:
            found.append(Recording(path.resolve(), matched[0], matched[1]))
    found.sort(key=lambda r: (r.start, r.camera_id, r.path.name))
    return Selection(tuple(found), other, tuple(unmatched))


def _files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            raise ValueError(f"{path}: no such file or folder")
    return files


def backfill(cfg: AppConfig, paths: Sequence[Path], shard: Shard = Shard()) -> BackfillReport:
    """Count each recording of ``paths`` in ``shard`` that has no complete run by this model.

    The model loads once; each recording is one run, exactly as ``truckcount run`` makes it.
    A recording that cannot be read (``SourceError``, or a ``ValueError`` such as an unknown
    start) is listed in ``failed`` with its reason, and the next one goes on.
    """
    chosen = find_recordings(paths, cfg, shard)
    detector = Detector(cfg.detector)
    engine = open_database(cfg.storage.url)
    try:
        done = {
            r.source
            for r in list_runs(engine)
            if r.status is RunStatus.COMPLETE and r.model_version == detector.version
        }
    finally:
        engine.dispose()
    already = tuple(r.path.name for r in chosen.recordings if str(r.path) in done)
    todo = [r for r in chosen.recordings if str(r.path) not in done]
    log.info(
        "backfill: %d recordings in shard %d/%d, %d already counted by model %s, %d to count",
        len(chosen.recordings),
        shard.index + 1,
        shard.count,
        len(already),
        detector.version,
        len(todo),
    )
    processed, failed = [], []
    for i, rec in enumerate(todo, 1):
        log.info("backfill %d/%d: %s (camera %s)", i, len(todo), rec.path.name, rec.camera_id)
        try:
            run_recording(
                cfg, rec.camera_id, source=str(rec.path), start=rec.start, detector=detector
            )
        except (SourceError, ValueError) as exc:
            reason = first_line(exc)
            log.error("backfill: %s failed: %s", rec.path.name, reason)
            failed.append((rec.path.name, reason))
            continue
        processed.append(rec.path.name)
    return BackfillReport(
        processed=tuple(processed),
        already_done=already,
        failed=tuple(failed),
        other_shards=chosen.other_shards,
        unmatched=chosen.unmatched,
    )
