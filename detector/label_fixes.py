"""Corrections to a labelled folder's classes, kept beside it instead of editing its files.

A fixes file is a CSV with the header ``image,line,was,to,note``: the label file's stem
(``adit-00002``), the 1-based line in it, the source class name that line must have now (``was``)
and the one it gets (``to``), both names of the folder's ``data.yaml``; ``note`` is free text.
``was`` guards against a folder that changed since the fixes were written: a line whose class
is not ``was`` is an error, as is a row naming a file or line that does not exist, so a fix is
never applied to the wrong box or silently dropped.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

COLUMNS = ("image", "line", "was", "to", "note")


class LabelFixError(ValueError):
    """A fixes file is malformed or does not match the labelled folder."""


@dataclass(frozen=True)
class LabelFix:
    """One corrected label line."""

    image: str
    line: int
    was: str
    to: str
    row: int  # line of the fixes file, for error messages


@dataclass(frozen=True)
class LabelFixes:
    """The fixes of one file, by label-file stem and line."""

    path: Path
    by_image: Mapping[str, Mapping[int, LabelFix]]

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_image.values())

    def resolve(self, names: Mapping[int, str]) -> dict[str, dict[int, tuple[int, int]]]:
        """Per stem and line, (source class id it must have, id it gets), from class names."""
        ids = {name: i for i, name in names.items()}
        out: dict[str, dict[int, tuple[int, int]]] = {}
        for stem, lines in self.by_image.items():
            for line, fix in lines.items():
                unknown = [n for n in (fix.was, fix.to) if n not in ids]
                if unknown:
                    raise LabelFixError(
                        f"{self.path}:{fix.row}: class {unknown[0]!r} is not in data.yaml "
                        f"(known: {sorted(ids)})"
                    )
                out.setdefault(stem, {})[line] = (ids[fix.was], ids[fix.to])
        return out


def read_label_fixes(path: Path) -> LabelFixes:
    """Read and check a fixes file; raise ``LabelFixError`` naming the file and row."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise LabelFixError(f"{path}: cannot read the label fixes ({exc.strerror})") from exc
    reader = csv.DictReader(text.splitlines())
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise LabelFixError(f"{path}: expected the header {','.join(COLUMNS)}")
    by_image: dict[str, dict[int, LabelFix]] = {}
    for row, rec in enumerate(reader, start=2):
        fix = _parse_row(path, row, rec)
        lines = by_image.setdefault(fix.image, {})
        if fix.line in lines:
            raise LabelFixError(f"{path}:{row}: {fix.image} line {fix.line} is fixed twice")
        lines[fix.line] = fix
    return LabelFixes(path, by_image)


def read_optional(path: str | Path | None) -> LabelFixes | None:
    """The fixes of ``path``, or None when no file is given."""
    return read_label_fixes(Path(path)) if path else None


def _parse_row(path: Path, row: int, rec: dict[str, str | None]) -> LabelFix:
    image, line, was, to = (str(rec.get(k) or "").strip() for k in COLUMNS[:4])
    if not image or not was or not to:
        raise LabelFixError(f"{path}:{row}: image, was and to must not be empty")
    try:
        number = int(line)
    except ValueError:
        raise LabelFixError(f"{path}:{row}: line must be a whole number, got {line!r}") from None
    if number < 1:
        raise LabelFixError(f"{path}:{row}: line must be at least 1, got {number}")
    return LabelFix(image, number, was, to, row)
