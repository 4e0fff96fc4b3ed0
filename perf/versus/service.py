"""The synchronous service running, for a benchmark: its own PostgreSQL database
(created anew, dropped at the end), a customer and an operator, and uvicorn
serving perf.versus.app with two worker processes on a free loopback port.

    with versus_service() as versus:
        requests.post(versus.base + "/api/bookings", json=BODY, headers=versus.customer)

uvicorn runs as a competent deployment would run it: uvloop and httptools (its
"standard" extras' fast paths), no access log. PostgreSQL is the machine's own
server with its own settings (durable commits included): its CPU is counted
as its whole process tree's (perf.versus.service.postmaster_pid), its
background processes with the backends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg

from perf.versus import store
from tools.processes import free_port, stop
from tools.stack import ROOT

DEFAULT_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=radiantgo_versus"
WORKERS = 2  # as RadiantGo's ingress (WEB_WORKERS)
POOL_SIZE = 10  # connections per worker process
START_TIMEOUT_S = 30.0


@dataclass
class Versus:
    base: str
    dsn: str
    server: subprocess.Popen
    postmaster: int  # the PostgreSQL server's pid: its tree is every backend
    customer_id: str
    customer_key: str
    operator_key: str

    @property
    def customer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.customer_key}"}

    @property
    def operator(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.operator_key}"}


def postmaster_pid(dsn: str) -> int:
    """The PostgreSQL server process: the parent of any backend."""
    with psycopg.connect(dsn) as conn:  # the backend lives as long as its connection
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        return psutil.Process(backend).ppid()


def start_server(dsn: str, log_path: Path, workers: int, pool_size: int, awb_prefix: str):
    """uvicorn serving the app; (process, base URL) once it answers /health."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--factory", "perf.versus.app:create_app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    command += ["--loop", "uvloop", "--http", "httptools", "--no-access-log"]
    command += ["--log-level", "warning"]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "VERSUS_DSN": dsn,
        "VERSUS_POOL_SIZE": str(pool_size),
        "VERSUS_AWB_PREFIX": awb_prefix,
    }
    with open(log_path, "a") as log:
        proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"uvicorn exited during start-up (see {log_path})")
        if _answers(base) and _workers_started(proc.pid, workers):
            return proc, base
        time.sleep(0.2)
    stop(proc)
    raise RuntimeError(f"uvicorn did not answer within {START_TIMEOUT_S:.0f} s")


def _answers(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/health", timeout=2):
            return True
    except (OSError, urllib.error.URLError):
        return False


def _workers_started(pid: int, workers: int) -> bool:
    """uvicorn's supervisor has spawned its worker processes (one answering is not
    all of them; its multiprocessing resource tracker is a child too)."""
    try:
        children = psutil.Process(pid).children()
        spawned = [c for c in children if "spawn_main" in " ".join(c.cmdline())]
    except psutil.Error:
        return False
    return len(spawned) >= workers


@contextlib.contextmanager
def versus_service(
    dsn: str = DEFAULT_DSN,
    *,
    workers: int = WORKERS,
    pool_size: int = POOL_SIZE,
    awb_prefix: str = "000",
) -> Iterator[Versus]:
    work = Path(tempfile.mkdtemp(prefix="radiantgo-versus-"))
    store.create_database(dsn)
    server = None
    try:
        store.create_schema(dsn, awb_prefix)
        customer_id, customer_key = store.create_caller(dsn, store.CUSTOMER)
        _, operator_key = store.create_caller(dsn, store.OPERATOR)
        server, base = start_server(dsn, work / "uvicorn.log", workers, pool_size, awb_prefix)
        yield Versus(
            base, dsn, server, postmaster_pid(dsn), customer_id, customer_key, operator_key
        )
    finally:
        if server is not None:
            stop(server)
        store.drop_database(dsn)
        shutil.rmtree(work, ignore_errors=True)
