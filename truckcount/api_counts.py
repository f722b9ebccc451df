"""``GET /counts``: hourly or daily buckets as JSON or CSV, as ``truckcount counts`` prints them.

The route only turns query parameters into a ``CountsRequest`` and renders what
``truckcount.query`` returns; every rule about buckets, coverage and vintages lives in storage.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError

from truckcount.config import AppConfig
from truckcount.query import CountsRequest, OutputFormat, fetch_with, render
from truckcount.status import configured_series
from truckcount.storage import StorageError, UnknownCameraError
from truckcount.types import BucketWidth

router = APIRouter()

WIDTHS = {"hour": BucketWidth.HOURLY, "day": BucketWidth.DAILY}


class BucketOut(BaseModel):
    """One bucket of one series (line, direction); ``count`` is null where nothing was analysed."""

    start: str = Field(description="local start, ISO 8601 with UTC offset")
    end: str = Field(description="local end (exclusive), ISO 8601 with UTC offset")
    line_id: str
    direction_name: str
    class_name: str
    count: int | None = Field(description="crossings; null when no analysed video covers it")
    covered_s: float = Field(description="seconds of the bucket covered by analysed video")
    truck_share: float | None = Field(
        default=None,
        description="share (0..1) of the frames the truck-presence classifier looked at in the "
        "bucket that hold a truck, the same for every line and direction of the camera; null "
        "when it looked at none",
    )


def parse_instant(name: str, value: str | None) -> datetime | None:
    """An ISO 8601 instant with a UTC offset, or a 422 naming the parameter."""
    if value is None:
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise HTTPException(
            422, f"{name} {value!r} is not ISO 8601 (e.g. 2021-11-15T13:17:09+07:00)"
        ) from None
    if ts.utcoffset() is None:
        raise HTTPException(422, f"{name} {value!r} needs a UTC offset, e.g. +07:00")
    return ts


@router.get(
    "/counts",
    summary="Hourly or daily crossing counts of one camera",
    response_model=list[BucketOut],
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
        404: {"description": "unknown camera"},
        422: {"description": "a parameter is invalid; the detail names it"},
        503: {"description": "the database is unavailable"},
    },
)
def get_counts(
    request: Request,
    camera: Annotated[str, Query(min_length=1, description="camera id")],
    line: Annotated[str | None, Query(description="only this line id")] = None,
    vehicle: Annotated[str, Query(alias="class", description="truck, bus or car")] = "truck",
    direction: Annotated[str | None, Query(description="only this direction name")] = None,
    granularity: Annotated[Literal["hour", "day"], Query(description="bucket width")] = "day",
    from_: Annotated[date | None, Query(alias="from", description="first local day")] = None,
    to: Annotated[date | None, Query(description="last local day (inclusive)")] = None,
    tz: Annotated[str | None, Query(description="IANA zone (default: camera's)")] = None,
    as_of: Annotated[
        str | None, Query(description="what was known at this instant, ISO 8601 with offset")
    ] = None,
    model_version: Annotated[str | None, Query(description="only this model version")] = None,
    fmt: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
) -> Response:
    """Buckets per line and direction on local hours or days, with the seconds covered.

    A bucket that no analysed video touched has ``count`` null (an empty CSV cell), never 0.
    Without ``from``/``to`` the range is the covered days.
    """
    cfg: AppConfig | None = request.app.state.settings.config
    req = CountsRequest(
        camera_id=camera,
        width=WIDTHS[granularity],
        tz=tz,
        start=from_,
        end=to,
        line_id=line,
        vehicle=vehicle,
        direction_name=direction,
        as_of=parse_instant("as_of", as_of),
        model_version=model_version,
        known_series=configured_series(cfg, camera),
    )
    try:
        buckets, zone = fetch_with(request.app.state.engine, req)
    except UnknownCameraError as exc:
        raise HTTPException(404, str(exc)) from None
    except (StorageError, ValueError) as exc:
        raise HTTPException(422, str(exc)) from None
    except SQLAlchemyError as exc:  # the database went away: not the caller's fault
        raise HTTPException(503, f"database unavailable: {type(exc).__name__}") from None
    fmt_enum = OutputFormat(fmt)
    media = "text/csv; charset=utf-8" if fmt_enum is OutputFormat.CSV else "application/json"
    return Response(render(buckets, req, zone, fmt_enum), media_type=media)
