"""Read-side helpers shared by the CLI: buckets as a table, CSV, JSON or a Parquet file.

A bucket no analysed video covered is unknown: it prints as an empty cell (table, CSV),
``null`` (JSON) or a null ``count`` (Parquet), never as 0. Likewise ``truck_share``, the share of
the frames the truck-presence classifier looked at that hold a truck, is empty or null where it
looked at none.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from truckcount.storage import bucket_counts, camera_timezone, open_database, stored_series
from truckcount.types import Bucket, BucketWidth, VehicleClass


class OutputFormat(StrEnum):
    """How ``truckcount counts`` prints its buckets."""

    TABLE = "table"
    CSV = "csv"
    JSON = "json"
    PARQUET = "parquet"  # binary: written to a file with ``write_parquet``


@dataclass(frozen=True)
class CountsRequest:
    """What ``truckcount counts`` asks of the database (see ``storage.bucket_counts``)."""

    camera_id: str
    width: BucketWidth = BucketWidth.DAILY
    tz: str | None = None
    start: date | None = None
    end: date | None = None
    line_id: str | None = None
    vehicle: str = "truck"
    direction_name: str | None = None
    as_of: datetime | None = None
    model_version: str | None = None
    known_series: tuple[tuple[str, str], ...] = ()  # (line, direction) pairs from the config


def _vehicle(name: str) -> VehicleClass:
    try:
        return VehicleClass(name)
    except ValueError:
        known = ", ".join(c.value for c in VehicleClass)
        raise ValueError(f"unknown class {name!r} (expected one of: {known})") from None


def fetch(url: str, req: CountsRequest) -> tuple[list[Bucket], str]:
    """The buckets ``req`` asks for from the database at ``url``, and the zone they are in."""
    _vehicle(req.vehicle)
    engine = open_database(url, create=False)
    try:
        return fetch_with(engine, req)
    finally:
        engine.dispose()


def fetch_with(engine: Engine, req: CountsRequest) -> tuple[list[Bucket], str]:
    """``fetch`` on an open engine (a long-running server keeps one)."""
    cls = _vehicle(req.vehicle)
    zone = req.tz or camera_timezone(engine, req.camera_id)
    if req.line_id is not None or req.direction_name is not None:
        _check_series(engine, req)
    buckets = bucket_counts(
        engine,
        req.camera_id,
        width=req.width,
        tz=zone,
        start=req.start,
        end=req.end,
        line_id=req.line_id,
        class_name=cls,
        direction_name=req.direction_name,
        as_of=req.as_of,
        model_version=req.model_version,
        known_series=req.known_series,
    )
    return buckets, zone


def _check_series(engine: Engine, req: CountsRequest) -> None:
    """A line or direction neither configured nor ever counted is a typo, not a quiet series:
    without this check it would read as 'no analysed video'."""
    known = set(req.known_series) | stored_series(engine, req.camera_id)
    for what, asked, names in (
        ("line", req.line_id, {line for line, _ in known}),
        ("direction", req.direction_name, {d for line, d in known if req.line_id in (None, line)}),
    ):
        if asked is not None and asked not in names:
            listed = ", ".join(sorted(names)) or "none yet"
            raise ValueError(
                f"camera {req.camera_id!r} has no {what} {asked!r} in its config or its stored "
                f"crossings (known: {listed})"
            )


def render(buckets: list[Bucket], req: CountsRequest, zone: str, fmt: OutputFormat) -> str:
    """Buckets as text in ``fmt``; times are local ISO 8601 with their UTC offset."""
    if fmt is OutputFormat.JSON:
        return json.dumps([_record(b, zone) for b in buckets], indent=1)
    if fmt is OutputFormat.CSV:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=RECORD_FIELDS, lineterminator="\n")
        writer.writeheader()
        for b in buckets:
            row = _record(b, zone)
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        return out.getvalue().rstrip("\n")
    return _table(buckets, req, zone)


def write_parquet(buckets: list[Bucket], zone: str, path: Path) -> None:
    """Write buckets to a Parquet file: one row per bucket, times as local timestamps in
    ``zone``, ``count`` null where nothing was covered, ``truck_share`` null where no frame was
    classified.

    Raises:
        ValueError: the file cannot be written (the message names it).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    stamp = pa.timestamp("us", tz=zone)
    schema = pa.schema(
        [
            ("start", stamp),
            ("end", stamp),
            ("line_id", pa.string()),
            ("direction_name", pa.string()),
            ("class_name", pa.string()),
            ("count", pa.int64()),
            ("covered_s", pa.float64()),
            ("truck_share", pa.float64()),
        ]
    )
    rows = [_values(b) for b in buckets]
    columns = {name: [r[name] for r in rows] for name in RECORD_FIELDS}
    try:
        pq.write_table(pa.table(columns, schema=schema), path)
    except OSError as exc:
        raise ValueError(f"cannot write {path}: {exc}") from None


RECORD_FIELDS = (
    "start",
    "end",
    "line_id",
    "direction_name",
    "class_name",
    "count",
    "covered_s",
    "truck_share",
)
"""The fields of one bucket in JSON, CSV and Parquet, in order (``_values``)."""


def _values(b: Bucket) -> dict[str, object]:
    """One bucket's fields, in ``RECORD_FIELDS`` order; times are aware datetimes."""
    return {
        "start": b.start,
        "end": b.end,
        "line_id": b.line_id,
        "direction_name": b.direction_name,
        "class_name": b.class_name.value,
        "count": b.count,
        "covered_s": b.covered_s,
        "truck_share": b.truck_share,
    }


def _record(b: Bucket, zone: str) -> dict[str, object]:
    """``_values`` with times as ISO strings in ``zone`` (JSON and CSV)."""
    tz = ZoneInfo(zone)
    return {
        **_values(b),
        "start": b.start.astimezone(tz).isoformat(),
        "end": b.end.astimezone(tz).isoformat(),
    }


def _label(b: Bucket, zone: ZoneInfo) -> str:
    local = b.start.astimezone(zone)
    if b.width is BucketWidth.DAILY:
        return local.date().isoformat()
    return local.isoformat(sep=" ", timespec="minutes")  # the offset tells DST hours apart


def _table(buckets: list[Bucket], req: CountsRequest, zone: str) -> str:
    """One row per bucket, one column per line:direction, a total and the share covered, and the
    share of classified frames with a truck when the presence classifier ran on any bucket."""
    tz = ZoneInfo(zone)
    columns = sorted({(b.line_id, b.direction_name) for b in buckets})
    rows: dict[datetime, dict[tuple[str, str], Bucket]] = {}
    for b in buckets:
        rows.setdefault(b.start, {})[(b.line_id, b.direction_name)] = b
    head = ["local " + ("day" if req.width is BucketWidth.DAILY else "hour")]
    head += [f"{line}:{d}" for line, d in columns] + ["total", "covered"]
    presence = any(b.truck_share is not None for b in buckets)
    if presence:
        head.append("truck share")
    body = []
    for start in sorted(rows):
        cells = rows[start]
        first = next(iter(cells.values()))
        counts = [cells[c].count if c in cells else None for c in columns]
        known = [n for n in counts if n is not None]
        share = first.covered_s / (first.end - first.start).total_seconds()
        total = str(sum(known)) if known else ""
        values = ["" if n is None else str(n) for n in counts]
        row = [_label(first, tz), *values, total, _coverage(first.covered_s, share)]
        if presence:
            row.append("" if first.truck_share is None else f"{first.truck_share:.1%}")
        body.append(row)
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    title = (
        f"{_vehicle(req.vehicle).value} crossings per local {head[0][6:]} ({zone}), "
        f"camera {req.camera_id}; empty = not covered"
    )
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines += [
        "  ".join(
            v.rjust(w) if i else v.ljust(w)
            for i, (v, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in body
    ]
    if not body:
        lines.append("(no analysed video in this range)")
    return "\n".join(lines)


def _coverage(seconds: float, share: float) -> str:
    """Covered time and share of the bucket, e.g. ``75 s (0.09%)`` or ``24.0 h (100%)``."""
    amount = f"{seconds:.0f} s" if seconds < 3600 else f"{seconds / 3600:.1f} h"
    return f"{amount} ({share:.2%})" if share < 0.1 else f"{amount} ({share:.0%})"
