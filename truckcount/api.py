"""The HTTP API (FastAPI): counts, camera status, health, Prometheus metrics and the dashboard.

``create_app(ApiSettings(...))`` builds the application around one open database engine. Every
route but ``/health`` and the dashboard's static files needs ``Authorization: Bearer <token>``
when a token is set (the dashboard page itself holds no data; its script sends the token). The
token is compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from truckcount import metrics, service_store, status
from truckcount.api_counts import router as counts_router
from truckcount.config import AppConfig
from truckcount.storage import StorageError, open_database

log = logging.getLogger(__name__)

DASHBOARD = Path(__file__).parent / "dashboard"
PUBLIC_PREFIXES = ("/health", "/dashboard")
TOKEN_ENV = "TRUCKCOUNT_API_TOKEN"


@dataclass(frozen=True)
class ApiSettings:
    """What the API serves: one database, the config it counts with, and an optional token.

    Args:
        database_url: SQLAlchemy URL of the counts database.
        config: the application config (configured cameras and lines); None for a bare database.
        token: bearer token every non-public route requires; None: no authentication.
        live: the live camera runtime, when the process runs one (see ``status.LiveStatus``).
    """

    database_url: str
    config: AppConfig | None = None
    token: str | None = None
    live: status.LiveStatus | None = None

    def __repr__(self) -> str:  # keep the token out of logs and tracebacks
        shown = "***" if self.token else None
        return f"ApiSettings(database_url=..., token={shown}, live={self.live!r})"


def _version() -> str:
    try:
        return metadata.version("truckcount")
    except metadata.PackageNotFoundError:
        return "unknown"


def create_app(settings: ApiSettings, engine: Engine | None = None) -> FastAPI:
    """The FastAPI application; ``engine`` defaults to ``open_database(settings.database_url)``."""
    app = FastAPI(
        title="truckcount",
        version=_version(),
        description="Truck counts from traffic-camera video: hourly and daily buckets with "
        "coverage, camera status, health and metrics.",
    )
    app.state.settings = settings
    app.state.engine = engine or open_database(settings.database_url)
    service_store.ensure_tables(app.state.engine)
    if settings.token:
        app.middleware("http")(_bearer_guard(settings.token))
    app.include_router(counts_router)
    _add_routes(app)
    app.mount("/dashboard", StaticFiles(directory=DASHBOARD, html=True), name="dashboard")
    return app


Handler = Callable[[Request], Awaitable[Response]]


def _bearer_guard(token: str) -> Callable[[Request, Handler], Awaitable[Response]]:
    expected = f"Bearer {token}".encode()

    async def guard(request: Request, call_next: Handler) -> Response:
        path = request.url.path
        if path == "/" or any(path.startswith(p) for p in PUBLIC_PREFIXES):
            return await call_next(request)
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return JSONResponse(
                {"detail": "missing or invalid bearer token (Authorization: Bearer <token>)"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return await call_next(request)

    return guard


def _add_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/dashboard/")

    @app.get("/health", summary="Liveness and database reachability (no token needed)")
    def health(request: Request) -> JSONResponse:
        try:
            service_store.ping(request.app.state.engine)
        except SQLAlchemyError as exc:
            log.warning("health: database unreachable: %s", type(exc).__name__)
            body = {"status": "unavailable", "database": "unreachable"}
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok", "version": _version()})

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    def get_metrics(request: Request) -> Response:
        live = request.app.state.settings.live
        if live is not None:
            live.camera_states()  # brings the live frame counters up to date
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/cameras", summary="Status of every configured or stored camera")
    def cameras(request: Request) -> dict[str, Any]:
        settings: ApiSettings = request.app.state.settings
        try:
            found = status.collect(request.app.state.engine, settings.config, settings.live)
        except (StorageError, SQLAlchemyError) as exc:
            raise HTTPException(503, f"database unavailable: {type(exc).__name__}") from None
        return {"cameras": [s.to_json() for s in found]}

    @app.get("/jobs", summary="Recent scheduled job executions and model evaluations")
    def jobs(request: Request) -> dict[str, Any]:
        engine = request.app.state.engine
        return {
            "jobs": [
                {
                    **vars(j),
                    "started_at": j.started_at.isoformat(),
                    "finished_at": j.finished_at.isoformat(),
                }
                for j in service_store.recent_jobs(engine)
            ],
            "evaluations": [
                {**vars(e), "evaluated_at": e.evaluated_at.isoformat()}
                for e in service_store.evaluations(engine, limit=5)
            ],
        }
