"""`make run`'s processes under supervisord (supervisor, http://supervisord.org).

tools.stack writes the configuration `render()` makes into the stack's var/
folder and runs supervisord in the foreground, in a session of its own:

- supervisord starts the listeners and the embedded database; the GROUP's
  programs wait until tools.stack has migrated the database
  (core.migrations), then start together (`start_group`): the ingress and the
  workers assume a migrated database.
- A program that dies is restarted while the others go on serving: at once if
  it had run STARTSECS, else after supervisor's backoff (1 s, 2 s, 3 s ... before
  each new try, up to START_RETRIES tries, then FATAL). supervisord logs each
  exit and start; the `restarts` listener (tools.supervisor_events) counts each
  restart in Redis, served on /metrics as radiantgo_process_restarts_total.
- supervisor starts each program as the leader of a process group of its own and
  stops (or kills) the whole group: Celery's pool processes and gunicorn's
  workers go with their parent. The GROUP's programs are stopped together, the
  embedded database after them, the listeners last; a program still running
  STOP_WAIT_S after its SIGTERM is killed.
- Every process stays in supervisord's session: none starts a session of its
  own, so `kill_session` reaches them all (a second Ctrl-C), and the background
  worker's nice value counts against the others', the session being one
  scheduler autogroup (tools.priority).
- Each program's output goes to var/log/<program>.log, and to the terminal a
  line at a time with the program's name in front (the `echo` listener).
"""

from __future__ import annotations

import configparser
import contextlib
import io
import os
import shlex
import signal
import sys
import time
import xmlrpc.client
from pathlib import Path

from celeryconfig import BACKGROUND_PREFETCH
from core import queues
from core.settings import Settings
from ingress.serving import WORKER_CLASS
from tools import ROOT

BIN = Path(sys.executable).parent
GROUP = "radiantgo"  # the programs stopped together, before the database
DATABASE = "mongo"
SEED = "seed"  # the demo schedule, started once the ingress answers
STARTSECS = 5
START_RETRIES = 10
STOP_WAIT_S = 11  # longer than gunicorn's --graceful-timeout: requests in flight finish
DATABASE_STOP_WAIT_S = 8  # SecantusDB closes its connections and storage in ~4 s
# tools.stack kills whatever is left this long after a Ctrl-C, so that all is
# gone within 15 s. Stopping takes a few seconds; only a group that used its
# whole STOP_WAIT_S leaves the database too little time, and it is then
# killed (its storage recovers from its journal, as after a crash).
STOP_DEADLINE_S = 14
CONFIG = "supervisord.conf"
SOCKET = "supervisor.sock"


def queue_list(settings: Settings, group: tuple[str, ...]) -> str:
    """A worker's -Q: the group's queues under this stack's namespace."""
    return ",".join(queues.queue_name(q, settings.QUEUE_NAMESPACE) for q in group)


def make_run_programs(settings: Settings, var: Path) -> dict[str, list[str]]:
    """The stack's long-running processes (the GROUP's), by name: their command lines."""
    celery = [str(BIN / "celery"), "-A", "workers.main"]
    worker = [*celery, "worker", "-E", "--pool", settings.WORKER_POOL]
    alone = ["--without-mingle", "--without-gossip"]
    recycled = ["--max-memory-per-child", str(settings.BACKGROUND_MAX_MEMORY_MB * 1024)]  # KiB
    return {
        "web": [
            *(str(BIN / "gunicorn"), "--bind", f"{settings.BIND_HOST}:{settings.PORT}"),
            *("--worker-class", WORKER_CLASS),
            *("--workers", str(settings.WEB_WORKERS), "--threads", str(settings.WEB_THREADS)),
            *("--timeout", "30"),
            # gunicorn's control socket is one path per user: a second stack's would clash.
            "--no-control-socket",
            *("--graceful-timeout", "10", "ingress:create_app()"),
        ],
        "worker": [
            *(*worker, "-Q", queue_list(settings, queues.INTERACTIVE)),
            *("--concurrency", str(settings.WORKER_CONCURRENCY), *alone, "-n", "interactive@%h"),
        ],
        "background": [
            *(sys.executable, "-m", "tools.priority", str(settings.BACKGROUND_NICE)),
            *(*worker, "-Q", queue_list(settings, queues.BACKGROUND)),
            *("--concurrency", str(settings.BACKGROUND_CONCURRENCY), *recycled),
            *("--prefetch-multiplier", str(BACKGROUND_PREFETCH), *alone, "-n", "background@%h"),
        ],
        "webhooks": [
            *(sys.executable, "-m", "tools.priority", str(settings.BACKGROUND_NICE)),
            *(*worker, "-Q", queue_list(settings, queues.OUTGOING)),
            *("--concurrency", str(settings.WEBHOOK_PROCESSES), *recycled),
            *("--prefetch-multiplier", str(BACKGROUND_PREFETCH), *alone, "-n", "webhooks@%h"),
        ],
        "beat": [*celery, "beat", "--schedule", str(var / "celerybeat-schedule")],
        "flower": [
            *(*celery, "flower", f"--address={settings.BIND_HOST}"),
            f"--port={settings.FLOWER_PORT}",
        ],
    }


def database_command(settings: Settings, var: Path) -> list[str]:
    """The embedded MongoDB wire server (SecantusDB), its data in var/mongo."""
    return [
        *(sys.executable, "-m", "secantus", "--host", "127.0.0.1"),
        *("--port", str(settings.EMBEDDED_MONGO_PORT), "--storage-path", str(var / "mongo")),
        *("--log-level", "WARNING"),
    ]


def seed_command() -> list[str]:
    """Route search should work on the first try: a demo schedule if there is none."""
    return [sys.executable, "-m", "tools.flights", "seed-flights", "--if-empty"]


def log_path(var: Path, name: str) -> Path:
    return var / "log" / f"{name}.log"


def _literal(value: str | Path) -> str:
    """A value supervisor reads as it is: it expands %(name)s in commands and paths."""
    return str(value).replace("%", "%%")


def _program(var: Path, name: str, command: list[str], **options: str) -> dict[str, str]:
    return {
        "command": _literal(shlex.join(command)),  # supervisor splits it with shlex
        "directory": _literal(ROOT),
        "autorestart": "true",
        "startsecs": str(STARTSECS),
        "startretries": str(START_RETRIES),
        "stopasgroup": "true",
        "killasgroup": "true",
        "stopwaitsecs": str(STOP_WAIT_S),
        "redirect_stderr": "true",
        "stdout_logfile": _literal(log_path(var, name)),
        "stdout_logfile_maxbytes": "10MB",
        "stdout_logfile_backups": "3",
        "stdout_events_enabled": "true",  # for the echo listener
        **options,
    }


def _listener(var: Path, name: str, events: str, **options: str) -> dict[str, str]:
    return {
        "command": _literal(shlex.join([sys.executable, "-m", "tools.supervisor_events", name])),
        "directory": _literal(ROOT),
        "events": events,
        "autorestart": "true",
        "stopwaitsecs": "2",
        "stderr_logfile": _literal(log_path(var, name)),
        **options,
    }


def render(
    settings: Settings,
    var: Path,
    *,
    database: bool,
    password: str,
    echo: bool = True,
    programs: dict[str, list[str]] | None = None,
    daemon: bool = False,
) -> str:
    """supervisord's configuration for this stack; `database`: run the embedded one;
    `password`: its control socket's (letters, digits, - and _; the socket is its
    owner's alone anyway, and supervisord warns without one); `echo`: every
    program's output on supervisord's stderr too; `programs`: the GROUP's, if not
    make run's; `daemon`: supervisord goes into the background (make cluster).
    The environment (settings, secrets) is supervisord's own, which every program inherits."""
    stack = programs if programs is not None else make_run_programs(settings, var)
    socket = {"username": "stack", "password": password}
    sections: dict[str, dict[str, str]] = {
        "supervisord": {
            "nodaemon": "false" if daemon else "true",
            "user": str(os.getuid()),  # ourselves: supervisor then does not warn about root
            "identifier": GROUP,
            "logfile": _literal(log_path(var, "supervisord")),
            "logfile_maxbytes": "10MB",
            "logfile_backups": "3",
            "pidfile": _literal(var / "supervisord.pid"),
            "childlogdir": _literal(var / "log"),
        },
        "unix_http_server": {"file": _literal(var / SOCKET), "chmod": "0700", **socket},
        "rpcinterface:supervisor": {
            "supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface"
        },
        "supervisorctl": {"serverurl": _literal(f"unix://{var / SOCKET}"), **socket},
        # Listeners first up and last down: they see every other process's events.
        "eventlistener:restarts": _listener(
            var, "restarts", "PROCESS_STATE,TICK_60", priority="1", buffer_size="100"
        ),
    }
    if echo:  # its own output to supervisord's stderr, the terminal (no rotation there)
        sections["eventlistener:echo"] = _listener(
            var,
            "echo",
            "PROCESS_LOG",
            priority="2",
            buffer_size="10000",
            stderr_logfile="/dev/stderr",
            stderr_logfile_maxbytes="0",
        )
    if database:
        sections[f"program:{DATABASE}"] = _program(
            var,
            DATABASE,
            database_command(settings, var),
            priority="20",
            stopwaitsecs=str(DATABASE_STOP_WAIT_S),
        )
    for name, command in stack.items():
        # Started by start_group once the database is migrated.
        sections[f"program:{name}"] = _program(var, name, command, autostart="false")
    sections[f"group:{GROUP}"] = {"programs": ",".join(stack), "priority": "30"}
    sections[f"program:{SEED}"] = _program(
        var,
        SEED,
        seed_command(),
        priority="40",
        autostart="false",
        autorestart="false",
        startsecs="0",
        stopwaitsecs="2",
    )
    parser = configparser.RawConfigParser()
    parser.optionxform = str  # keep option names as written
    parser.read_dict(sections)
    out = io.StringIO()
    out.write("; Written by tools/stack.py (make run) at each start: edit tools/supervision.py.\n")
    parser.write(out)
    return out.getvalue()


def write_config(path: Path, text: str) -> None:
    """The configuration, readable by its owner only (it holds the socket's password)."""
    path.unlink(missing_ok=True)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write(text)


def control(var: Path) -> xmlrpc.client.ServerProxy:
    """supervisord's XML-RPC interface (`supervisor.*`) over the stack's socket."""
    from supervisor.xmlrpc import SupervisorTransport

    parser = configparser.RawConfigParser()
    parser.read(var / CONFIG)
    ctl = parser["supervisorctl"]
    transport = SupervisorTransport(ctl["username"], ctl["password"], f"unix://{var / SOCKET}")
    # The URL is a placeholder: the transport connects to the socket.
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport)


def start_group(var: Path, timeout_s: float = 15) -> None:
    """Start the GROUP's programs (held at supervisord's start), once its
    control socket answers: supervisord may still be reading its configuration."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            control(var).supervisor.startProcessGroup(GROUP, False)
            return
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


def program_name(name: str) -> str:
    """The name supervisor's XML-RPC interface knows a program by."""
    return f"{GROUP}:{name}" if name not in (DATABASE, SEED) else name


def session_processes(sid: int) -> list[int]:
    """The live processes of session `sid` (Linux /proc), zombies left out."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):  # gone meanwhile
            stat = (entry / "stat").read_text()
            # pid (comm) state ppid pgrp session ...: comm may hold spaces and parentheses.
            state, _ppid, _pgrp, session = stat.rpartition(")")[2].split()[:4]
            if int(session) == sid and state != "Z":
                found.append(int(entry.name))
    return found


def kill_session(sid: int, rounds: int = 10) -> None:
    """SIGKILL every process of session `sid`, again while any is left (one may
    have forked meanwhile)."""
    for _ in range(rounds):
        pids = session_processes(sid)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)  # the kernel's turn: the killed become zombies, then vanish
