"""``truckcount serve``: the HTTP API and the job scheduler in one long-running process.

The API is served by uvicorn; APScheduler's ``BackgroundScheduler`` runs the jobs of
``service_jobs`` from a job store in the same database (table ``apscheduler_jobs``), so their next
run times survive restarts: a job that should have run while the service was down runs once at
start (coalesced), however late.

Shutdown (SIGTERM or SIGINT): uvicorn stops accepting requests and drains them, then jobs stop
taking work (``service_jobs.STOP``), a recording being processed is interrupted (its run is marked
failed and processed again on the next start), the scheduler waits for its jobs, the database is
closed, and the process exits 0, within ``SHUTDOWN_BUDGET_S``.

Live cameras: every configured camera whose source is a stream or a device runs in this process
(``service_live.LiveRuntime``, the same live session as ``truckcount live``); its state is part
of ``GET /cameras`` and its counters of ``GET /metrics``. On shutdown its open segments are
closed as complete runs before the jobs stop. Recordings come in through the watch folder.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import uvicorn
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_RUNNING
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from fastapi import FastAPI
from sqlalchemy import Engine

from truckcount import service_jobs
from truckcount.api import ApiSettings, create_app
from truckcount.config import AppConfig, ConfigError, load_config
from truckcount.ingest.live import is_live
from truckcount.storage import mask_url

if TYPE_CHECKING:
    from truckcount.service_live import LiveRuntime

log = logging.getLogger(__name__)

SHUTDOWN_BUDGET_S = 10.0
HTTP_DRAIN_S = 1
LIVE_STOP_S = 3.0
JOB_DEFAULTS = {"coalesce": True, "misfire_grace_time": None, "max_instances": 1}


@dataclass(frozen=True)
class JobSpec:
    """One scheduled job: a stable id, the entry point it calls, its trigger and arguments."""

    id: str
    func: str
    trigger: BaseTrigger
    kwargs: dict[str, Any]


def job_specs(cfg: AppConfig, config_path: Path) -> list[JobSpec]:
    """The jobs this config asks for (the watch folder and evaluation only when configured)."""
    arg = {"config_path": str(config_path.resolve())}
    specs = [
        JobSpec("rollup-hourly", "truckcount.service_jobs:rollup",
                CronTrigger(minute=5, timezone="UTC"), {**arg, "width": "hourly"}),
        JobSpec("rollup-daily", "truckcount.service_jobs:rollup",
                CronTrigger(minute=20, timezone="UTC"), {**arg, "width": "daily"}),
    ]  # fmt: skip
    svc = cfg.service
    if svc.watch_folder is not None:
        every = IntervalTrigger(seconds=svc.watch_interval_s, timezone="UTC")
        specs.append(JobSpec("watch-folder", "truckcount.service_jobs:watch_folder", every, arg))
    if svc.eval_data is not None:
        hour, minute = (int(p) for p in svc.nightly_at.split(":"))
        nightly = CronTrigger(hour=hour, minute=minute, timezone="UTC")
        specs.append(JobSpec("nightly-eval", "truckcount.service_jobs:nightly_eval", nightly, arg))
    return specs


class _Scheduler(BackgroundScheduler):
    """A ``BackgroundScheduler`` that looks at no job unless it is running.

    APScheduler 3 wakes its thread once more during ``shutdown()`` and processes due jobs with
    the executors already closed: submitting fails, yet the job's next run time is advanced and
    stored, so a run due at that moment (say, one missed during downtime) would be lost.
    """

    def _process_jobs(self) -> float | None:
        if self.state != STATE_RUNNING:
            return None
        wait: float | None = super()._process_jobs()
        return wait


def build_scheduler(engine: Engine, specs: list[JobSpec]) -> BackgroundScheduler:
    """A started, paused scheduler holding exactly ``specs`` in the database job store.

    A stored job whose trigger and arguments are unchanged keeps its stored next run time, so a
    run missed during downtime fires once on ``resume()``; changed jobs are replaced and jobs no
    longer configured are removed.
    """
    scheduler = _Scheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=engine)},
        job_defaults=JOB_DEFAULTS,
        timezone="UTC",
    )
    scheduler.start(paused=True)
    wanted = {s.id for s in specs}
    for job in scheduler.get_jobs():
        if job.id not in wanted:
            log.info("job %s is no longer configured; removed", job.id)
            job.remove()
    for spec in specs:
        stored = scheduler.get_job(spec.id)
        if stored is not None and _same(stored, spec):
            continue
        scheduler.add_job(spec.func, spec.trigger, id=spec.id, kwargs=spec.kwargs,
                          replace_existing=True)  # fmt: skip
    return scheduler


def _same(job: Any, spec: JobSpec) -> bool:
    return bool(
        job.func_ref == spec.func and str(job.trigger) == str(spec.trigger)
        and job.kwargs == spec.kwargs
    )  # fmt: skip


def check_watch_folder(folder: Path) -> None:
    """Refuse a watch folder that is a file; warn of one that does not exist (yet: a mount).

    Raises:
        ConfigError: ``folder`` exists and is not a folder.
    """
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"service.watch_folder {folder} is a file, not a folder")
    if not folder.exists():
        log.warning("service.watch_folder %s does not exist; each scan fails until it does", folder)


def check_binding(host: str, token: str | None, token_env: str) -> None:
    """Refuse a non-loopback address without a token.

    Raises:
        ConfigError: ``host`` is reachable from other machines and no token is set.
    """
    if token or _loopback(host):
        return
    raise ConfigError(
        f"refusing to serve on {host} without a token: set the environment variable "
        f"{token_env}, or bind to 127.0.0.1"
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(config_path: Path, host: str | None = None, port: int | None = None) -> None:
    """Run the API and the scheduler until SIGTERM or SIGINT; returns after a clean shutdown.

    Raises:
        ConfigError: invalid config, or a non-loopback address without a token.
        StorageError: the database cannot be opened.
    """
    cfg = load_config(config_path)
    svc = cfg.service
    bind_host, bind_port = host or svc.host, port or svc.port
    token = os.environ.get(svc.token_env) or None
    check_binding(bind_host, token, svc.token_env)
    if svc.watch_folder is not None:
        check_watch_folder(service_jobs.resolve(svc.watch_folder, config_path))
    service_jobs.STOP.clear()
    _quiet_scheduler_logs()
    engine = service_jobs.engine_for(cfg.storage.url)
    scheduler = build_scheduler(engine, job_specs(cfg, config_path))
    live = _live_runtime(cfg)
    app = create_app(ApiSettings(cfg.storage.url, cfg, token, live), engine)
    app.router.lifespan_context = _lifespan(scheduler, live)
    server = uvicorn.Server(
        uvicorn.Config(app, host=bind_host, port=bind_port, log_level="warning",
                       timeout_graceful_shutdown=HTTP_DRAIN_S, lifespan="on")
    )  # fmt: skip
    log.info(
        "serving %s on http://%s:%d (token %s); jobs: %s",
        mask_url(cfg.storage.url), bind_host, bind_port, "required" if token else "off",
        ", ".join(j.id for j in scheduler.get_jobs()),
    )  # fmt: skip
    with _quiet_signals():
        server.run()
    log.info("stopped")


class _DropBusySkips(logging.Filter):
    """A scan still running when the next is due is normal for the watch folder: not a warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in record.getMessage()


def _quiet_scheduler_logs() -> None:
    for name in ("apscheduler.scheduler", "apscheduler.executors.default"):
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    logging.getLogger("apscheduler.scheduler").addFilter(_DropBusySkips())


def _live_runtime(cfg: AppConfig) -> LiveRuntime | None:
    cameras = [c for c in cfg.cameras if c.source and is_live(c.source)]
    if not cameras:
        return None  # and the detector (torch) is never imported into this process
    from truckcount.service_live import LiveRuntime

    log.info("live cameras: %s", ", ".join(c.id for c in cameras))
    return LiveRuntime(cfg, cameras)


def _lifespan(scheduler: BackgroundScheduler, live: LiveRuntime | None) -> Callable[[FastAPI], Any]:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if live is not None:
            live.start()
        scheduler.resume()
        try:
            yield
        finally:
            shutdown(scheduler, live)

    return lifespan


def shutdown(scheduler: BackgroundScheduler, live: LiveRuntime | None = None) -> None:
    """Stop intake, close live segments, interrupt running work, wait for jobs, close the DB."""
    log.info("shutting down: stopping jobs")
    scheduler.pause()  # no new executions from here on
    service_jobs.STOP.set()  # children are interrupted while the live segments close
    if live is not None:
        live.stop(timeout_s=LIVE_STOP_S)
    scheduler.shutdown(wait=True)
    service_jobs.close_engines()


class _quiet_signals:
    """SIGTERM/SIGINT handlers that only note the signal, for uvicorn to fall back on.

    uvicorn handles both signals while serving and raises them again after its shutdown, with
    the handlers found before it started: these make that a quiet exit 0 instead of a death by
    signal.
    """

    def __enter__(self) -> None:
        def note(sig: int, _frame: FrameType | None) -> None:
            log.debug("signal %d after shutdown", sig)
            service_jobs.STOP.set()

        self._old = {s: signal.signal(s, note) for s in (signal.SIGTERM, signal.SIGINT)}

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
