"""Starting RadiantGo's processes as children: for tests and benchmarks.

The same commands `make run` runs (tools.supervision), with the environment built
from a Settings object, so a test run or a benchmark gets an isolated stack
(its own database, Redis DB and queue namespace) on the real services.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from celeryconfig import BACKGROUND_PREFETCH
from core import health, queues
from core.settings import Settings
from ingress.serving import WORKER_CLASS
from tools.stack import ROOT, settings_env, wait_for_port

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    return {**os.environ, **settings_env(settings), "PYTHONPATH": str(ROOT), **extra}


def _log(path: Path):
    return open(path, "a")


def start_secantus(
    data_dir: Path, log_path: Path, port: int | None = None
) -> tuple[subprocess.Popen, str]:
    """A SecantusDB on `port` (a free one by default) keeping its data in
    `data_dir`; returns (process, MONGODB_URI)."""
    port = port or free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "secantus",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--storage-path",
            str(data_dir),
            "--log-level",
            "WARNING",
        ],
        stdout=_log(log_path),
        stderr=subprocess.STDOUT,
    )
    if not wait_for_port("127.0.0.1", port, 30):
        stop(proc)
        raise RuntimeError("SecantusDB did not start")
    return proc, f"mongodb://127.0.0.1:{port}/radiantgo?retryWrites=false&journal=true"


def start_make_run(env: dict[str, str], var: Path, output: Path) -> subprocess.Popen:
    """`make run`'s supervised stack (tools.stack run) on `var`, its output
    appended to `output`, in a session of its own (stopped as a group)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tools.stack", "run", "--var-dir", str(var)],
        env=env,
        cwd=ROOT,
        stdout=_log(output),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def start_worker(
    settings: Settings,
    log_path: Path,
    *,
    name: str = "worker",
    queue_list: tuple[str, ...] = queues.ALL_QUEUES,
    concurrency: int | None = None,
    nice: int = 0,
) -> subprocess.Popen:
    """A Celery worker on `queue_list`; `nice` > 0 starts it at a lower CPU priority,
    as `make run` starts the background group (tools.priority)."""
    names = ",".join(queues.queue_name(q, settings.QUEUE_NAMESPACE) for q in queue_list)
    return _celery(
        settings,
        log_path,
        [
            "worker",
            "-E",
            "-Q",
            names,
            "--pool",
            settings.WORKER_POOL,
            "--concurrency",
            str(concurrency or settings.WORKER_CONCURRENCY),
            *(
                ["--prefetch-multiplier", str(BACKGROUND_PREFETCH)]
                if set(queue_list) <= set(queues.BACKGROUND)
                else []
            ),
            "--without-mingle",
            "--without-gossip",
            "-n",
            f"{name}-{uuid.uuid4().hex[:6]}@%h",
        ],
        prefix=[sys.executable, "-m", "tools.priority", str(nice)] if nice else [],
        start_new_session=True,  # its own process group: kill_worker() takes the children too
    )


def start_beat(settings: Settings, log_path: Path) -> subprocess.Popen:
    """Celery beat on these settings' schedule (its state file beside its log)."""
    return _celery(
        settings, log_path, ["beat", "--schedule", str(log_path.with_suffix(".schedule"))]
    )


def _celery(
    settings: Settings,
    log_path: Path,
    command: list[str],
    *,
    prefix: list[str] | None = None,
    **popen: Any,
) -> subprocess.Popen:
    """`celery -A workers.main <command>` on these settings, logging to `log_path`."""
    return subprocess.Popen(
        [
            *(prefix or []),
            str(BIN / "celery"),
            "-A",
            "workers.main",
            *command,
            "--loglevel",
            "WARNING",
        ],
        env=child_env(settings),
        cwd=ROOT,
        stdout=_log(log_path),
        stderr=subprocess.STDOUT,
        **popen,
    )


def kill_worker(proc: subprocess.Popen) -> None:
    """SIGKILL the worker and its pool processes at once, as a crashed host would."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def wait_for_worker(
    redis_client, proc: subprocess.Popen, since: float, timeout: float = 30
) -> None:
    """Until the worker has recorded a heartbeat newer than `since`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("worker exited during start-up")
        if redis_client.zrangebyscore(health.WORKER_HEARTBEATS, since, "+inf"):
            return
        time.sleep(0.2)
    raise RuntimeError("worker sent no heartbeat")


def start_ingress(
    settings: Settings, log_path: Path, *, app_target: str = "ingress:create_app()"
) -> tuple[subprocess.Popen, str]:
    """gunicorn with gthread workers (ingress.serving), as `make run` starts it;
    returns (process, base URL).
    `app_target` serves another app with the same flags (perf/bench_accept.py's floor)."""
    port = free_port()
    proc = subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            "--bind",
            f"127.0.0.1:{port}",
            "--worker-class",
            WORKER_CLASS,  # gthread, stamping each request's wait
            "--workers",
            str(settings.WEB_WORKERS),
            "--threads",
            str(settings.WEB_THREADS),
            app_target,
        ],
        env=child_env(settings),
        cwd=ROOT,
        stdout=_log(log_path),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("gunicorn exited during start-up")
        try:
            with urllib.request.urlopen(base + "/health", timeout=2):  # noqa: S310
                return proc, base
        except urllib.error.HTTPError:
            return proc, base
        except OSError:
            time.sleep(0.2)
    stop(proc)
    raise RuntimeError("ingress did not answer")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def delete_queues(settings: Settings) -> None:
    """This namespace's queues, with QUEUE_TYPE=quorum its delay and dead-letter
    queues and the delay queues' exchanges too."""
    from celeryconfig import create_celery_app, retry_queues

    app = create_celery_app(settings)
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for q in queues.ALL_QUEUES:
            channel.queue_delete(queues.queue_name(q, settings.QUEUE_NAMESPACE))
        for queue in retry_queues(settings):
            channel.queue_delete(queue.name)
            if queue.exchange and queue.exchange.name:
                channel.exchange_delete(queue.exchange.name)
