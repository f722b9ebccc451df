"""Read-side helpers shared by the CLI: daily counts as a printable table."""

from __future__ import annotations

from datetime import date

from truckcount.storage import repository as repo
from truckcount.storage.database import open_database
from truckcount.types import DailyCount, VehicleClass


def _vehicle(name: str) -> VehicleClass:
    try:
        return VehicleClass(name)
    except ValueError:
        known = ", ".join(c.value for c in VehicleClass)
        raise ValueError(f"unknown class {name!r} (expected one of: {known})") from None


def format_daily(rows: list[DailyCount], camera_id: str, tz: str, vehicle: VehicleClass) -> str:
    """One row per local day, one column per line/direction, and a total."""
    columns = sorted({(r.line_id, r.direction_name) for r in rows})
    days = sorted({r.day for r in rows})
    cell = {(r.day, r.line_id, r.direction_name): r.count for r in rows}
    head = ["day", *(f"{line}:{d}" for line, d in columns), "total"]
    body = []
    for day in days:
        values = [cell.get((day, line, d), 0) for line, d in columns]
        body.append([day, *map(str, values), str(sum(values))])
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    title = f"{vehicle.value} crossings per local day ({tz}), camera {camera_id}"
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines += [
        "  ".join(
            v.rjust(w) if i else v.ljust(w)
            for i, (v, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in body
    ]
    if not body:
        lines.append("(no crossings in this range)")
    return "\n".join(lines)


def daily_table(
    url: str,
    camera_id: str,
    *,
    tz: str | None,
    days: tuple[date | None, date | None],
    vehicle: str = "truck",
) -> str:
    """Daily counts of one camera from the database at ``url``, as text."""
    cls = _vehicle(vehicle)
    engine = open_database(url, create=False)
    try:
        rows = repo.daily_counts(
            engine, camera_id, tz=tz, start=days[0], end=days[1], class_name=cls
        )
        zone = tz or repo.camera_timezone(engine, camera_id)
    finally:
        engine.dispose()
    return format_daily(rows, camera_id, zone, cls)
