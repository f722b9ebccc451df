"""A throwaway PostgreSQL server for the storage tests: initdb + pg_ctl in a temporary folder.

The server listens on a free loopback port, trusts local connections and loses its data when
stopped. PostgreSQL refuses to run as root, so under root it runs as the ``postgres`` user that
Debian's packages create. ``scripts/test.sh`` installs those packages when ``pg_ctl`` is missing.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

SERVER_OPTIONS = (
    "-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
    "-c full_page_writes=off -c max_connections=40"
)


class PostgresUnavailable(RuntimeError):
    """No server could be started here; the message says why."""


def find_bin() -> Path:
    """Folder of the newest installed ``pg_ctl`` (Debian keeps it off the PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_major)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).parent
    raise PostgresUnavailable("pg_ctl not found; install Debian's postgresql package")


def _major(path: str) -> int:
    part = Path(path).parts[-3]
    return int(part) if part.isdigit() else 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _runner() -> tuple[list[str], int | None]:
    """Command prefix that drops root to ``postgres``, and that user's uid (None: stay as is)."""
    if os.geteuid() != 0:
        return [], None
    try:
        uid = pwd.getpwnam("postgres").pw_uid
    except KeyError:
        raise PostgresUnavailable("running as root and there is no 'postgres' user") from None
    runuser = shutil.which("runuser")
    if runuser is None:
        raise PostgresUnavailable("running as root and runuser is missing")
    return [runuser, "-u", "postgres", "--"], uid


def _run(what: str, cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise PostgresUnavailable(f"{what} failed: {' | '.join(tail)}")


@dataclass(frozen=True)
class Server:
    """A running test server that a test may stop and start again (same port, same data)."""

    url: str
    stop: Callable[[], None]
    start: Callable[[], None]


@contextlib.contextmanager
def server() -> Iterator[str]:
    """Start a server; yields its URL (database ``postgres``, user ``postgres``, no password)."""
    with restartable_server() as running:
        yield running.url


@contextlib.contextmanager
def restartable_server() -> Iterator[Server]:
    """Start a server; yields it with ``stop`` (fast shutdown) and ``start`` to simulate outages."""
    bindir = find_bin()
    prefix, uid = _runner()
    root = Path(tempfile.mkdtemp(prefix="truckcount-pg-"))
    if uid is not None:
        os.chown(root, uid, -1)
    data, port = root / "data", _free_port()
    pg_ctl = [*prefix, str(bindir / "pg_ctl"), "-D", str(data)]
    options = f"-p {port} -k {root} {SERVER_OPTIONS}"
    log = str(root / "log")

    def start() -> None:
        _run("pg_ctl start", [*pg_ctl, "-o", options, "-l", log, "-w", "-t", "60", "start"])

    def stop() -> None:
        _run("pg_ctl stop", [*pg_ctl, "-m", "fast", "-w", "stop"])

    try:
        initdb = [*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "postgres"]
        _run("initdb", [*initdb, "--auth=trust", "--no-sync", "-E", "UTF8"])
        start()
        yield Server(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", stop, start)
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)
