"""`make run` under supervisord: its configuration as supervisord reads it, the
event listeners, and the real stack manager (tools.stack run) on ports, a
Redis, a database, a queue namespace and a var/ folder of its own: a crashed
worker is restarted while the rest serves, one Ctrl-C leaves no process, a
second one kills at once."""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families
from redis.backoff import NoBackoff
from redis.retry import Retry

from core import metrics, monitoring
from core.bookings import LIST_KEYS_MIGRATION
from core.db import connect_mongo, database
from core.flights import CAPACITY_MIGRATION, VOLUME_MIGRATION
from core.settings import Settings, load_settings, replace
from tests.conftest import ADMIN, ADMIN_TOKEN, booking_body
from tools import supervision
from tools.processes import delete_queues, free_port, start_make_run
from tools.stack import database_uri
from tools.supervisor_events import Echo, RestartCounter

# -- the configuration ------------------------------------------------------------------


def _read_as_supervisord(text: str, folder: Path):
    from supervisor.options import ServerOptions

    (folder / "log").mkdir(exist_ok=True)
    (folder / supervision.CONFIG).write_text(text)
    options = ServerOptions()
    options.configfile = str(folder / supervision.CONFIG)
    options.process_config(do_usage=False)
    return {group.name: group for group in options.process_group_configs}


def test_supervisord_runs_each_program_as_written_and_stops_the_database_after_them(tmp_path):
    settings = load_settings({}, QUEUE_NAMESPACE="ns%h")  # supervisor expands %(...)s
    groups = _read_as_supervisord(
        supervision.render(settings, tmp_path, database=True, password="pw"), tmp_path
    )
    stack = {p.name: p for p in groups[supervision.GROUP].process_configs}
    assert {
        name: shlex.split(p.command) for name, p in stack.items()
    } == supervision.make_run_programs(settings, tmp_path)
    assert stack["worker"].command.endswith("-n interactive@%h")  # Celery's %h, kept
    (database,) = groups[supervision.DATABASE].process_configs
    assert shlex.split(database.command) == supervision.database_command(settings, tmp_path)
    for program in [*stack.values(), database]:
        assert program.autorestart and program.stopasgroup and program.killasgroup
    # The database starts with supervisord; the programs once it is migrated (start_group).
    assert database.autostart and not any(p.autostart for p in stack.values())
    # Stopped in reverse priority: the programs, then the database, then the listeners.
    order = sorted(groups.values(), key=lambda group: -group.priority)
    assert [g.name for g in order] == ["seed", "radiantgo", "mongo", "echo", "restarts"]
    without = _read_as_supervisord(
        supervision.render(settings, tmp_path, database=False, password="pw"), tmp_path
    )
    assert supervision.DATABASE not in without  # MONGODB_URI names the database


def test_the_background_worker_runs_at_its_priority_on_the_background_queues():
    from core import queues

    settings = load_settings({}, BACKGROUND_NICE=7)
    stack = supervision.make_run_programs(settings, Path("var"))
    assert stack["background"][1:4] == ["-m", "tools.priority", "7"]
    assert stack["worker"][stack["worker"].index("-Q") + 1] == "bookings,status"
    assert stack["background"][stack["background"].index("-Q") + 1] == "bulk,maintenance"
    assert stack["webhooks"][1:4] == ["-m", "tools.priority", "7"]
    assert stack["webhooks"][stack["webhooks"].index("-Q") + 1] == "webhooks"
    everything = queues.INTERACTIVE + queues.BACKGROUND + queues.OUTGOING
    assert sorted(everything) == sorted(queues.ALL_QUEUES)


def test_background_and_webhook_pool_processes_are_replaced_past_their_memory_bound():
    """A day of warms and imports must not leave a pool process holding its peak."""
    stack = supervision.make_run_programs(
        load_settings({}, BACKGROUND_MAX_MEMORY_MB=100), Path("var")
    )
    for name in ("background", "webhooks"):
        command = stack[name]
        assert command[command.index("--max-memory-per-child") + 1] == str(100 * 1024), name
    assert "--max-memory-per-child" not in stack["worker"]


# -- the event listeners ----------------------------------------------------------------


def _state(program: str, from_state: str, **extra) -> str:
    fields = {"processname": program, "groupname": "radiantgo", "from_state": from_state, **extra}
    return " ".join(f"{k}:{v}" for k, v in fields.items())


def test_restarts_are_counted_per_program_on_metrics(services, client):
    services.redis.delete(metrics.PROCESS_RESTARTS)
    counter = RestartCounter(services.redis)
    for program in ("web", "worker"):
        counter.handle("PROCESS_STATE_STARTING", _state(program, "STOPPED", tries=0))
    counter.handle("PROCESS_STATE_STARTING", _state("worker", "EXITED", tries=0))
    counter.handle("PROCESS_STATE_STARTING", _state("worker", "BACKOFF", tries=1))
    counter.handle("PROCESS_STATE_RUNNING", _state("worker", "STARTING", pid=1))
    assert monitoring.restart_figures(services.redis) == {"web": 0, "worker": 2}
    text = client.get("/metrics", headers=ADMIN).get_data(as_text=True)
    (family,) = [f for f in text_string_to_metric_families(text) if f.name.endswith("restarts")]
    assert {s.labels["program"]: s.value for s in family.samples} == {"web": 0, "worker": 2}
    assert family.name == "radiantgo_process_restarts" and family.type == "counter"


def test_restarts_redis_missed_are_counted_with_a_later_event(services):
    services.redis.delete(metrics.PROCESS_RESTARTS)
    down = redis.Redis(port=free_port(), retry=Retry(NoBackoff(), 0))  # refused at once
    counter = RestartCounter(down)
    counter.handle("PROCESS_STATE_STARTING", _state("beat", "EXITED", tries=0))
    assert counter.pending == {"beat": 1}
    counter.redis = services.redis  # Redis is back
    counter.handle("TICK_60", "when:1700000000")
    assert monitoring.restart_figures(services.redis) == {"beat": 1}
    assert not counter.pending


def test_a_dead_programs_leftover_processes_are_killed(services):
    # A leader whose child stays in its group, as a Celery worker's pool processes.
    leader = subprocess.Popen(
        ["sh", "-c", "sleep 300 & echo $!; exec sleep 300"],
        stdout=subprocess.PIPE,
        text=True,
        process_group=0,
    )
    child = int(leader.stdout.readline())
    leader.kill()
    leader.wait()
    try:
        RestartCounter(services.redis).handle(
            "PROCESS_STATE_EXITED", _state("worker", "RUNNING", expected=0, pid=leader.pid)
        )
        _wait_until(lambda: not _alive(child), 5, "the dead leader's child still runs")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader.pid, signal.SIGKILL)


def test_echo_writes_whole_lines_after_the_programs_name():
    out = io.StringIO()
    echo = Echo(out)
    header = "processname:{} groupname:radiantgo pid:7 channel:stdout\n"
    echo.handle(header.format("web") + "first\nsec")
    echo.handle(header.format("worker") + "ready\n")
    echo.handle(header.format("web") + "ond\n")
    lines = [line.split(" ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines == ["web        | first", "worker     | ready", "web        | second"]


# -- the stack manager, for real ----------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    """state, ppid, pgrp, session ... of a live process; None once gone (or a zombie)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields


def _alive(pid: int) -> bool:
    return _stat(pid) is not None


def _descendants(pid: int) -> set[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))):
            parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _pool(worker: int, size: int) -> set[int]:
    """A Celery worker's pool processes, once it has started them all."""
    _wait_until(lambda: len(_descendants(worker)) == size, 30, "the pool did not start")
    return _descendants(worker)


def _wait_until(condition, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.1)


@dataclass
class MakeRun:
    """`python -m tools.stack run` as `make run` runs it, in a process group of
    its own (as a terminal's foreground job), its output in `output`."""

    settings: Settings
    var: Path
    output: Path
    proc: subprocess.Popen | None = None
    seen: set[int] = field(default_factory=set)  # every process it had at some point

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.settings.PORT}"

    def start(self, env: dict[str, str]) -> None:
        self.proc = start_make_run(env, self.var, self.output)

    def printed(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_serving(self, timeout: float = 120) -> None:
        """Until it printed its summary and every program is RUNNING."""
        deadline = time.monotonic() + timeout
        while "RadiantGo is running" not in self.printed():
            assert self.proc.poll() is None, f"make run exited:\n{self.printed()[-3000:]}"
            assert time.monotonic() < deadline, f"no summary:\n{self.printed()[-3000:]}"
            time.sleep(0.2)
        names = [*supervision.make_run_programs(self.settings, self.var), supervision.DATABASE]
        _wait_until(
            lambda: all(self.info(name)["statename"] == "RUNNING" for name in names),
            deadline - time.monotonic(),
            "a program never ran",
        )
        self.processes()

    def supervisor(self):
        return supervision.control(self.var).supervisor

    def info(self, name: str) -> dict:
        return self.supervisor().getProcessInfo(supervision.program_name(name))

    def processes(self) -> set[int]:
        """Its processes now (all of supervisord's session and its descendants),
        added to `seen`."""
        sid = self.supervisor().getPID()
        now = set(supervision.session_processes(sid)) | _descendants(self.proc.pid)
        self.seen |= now
        return now

    def ctrl_c(self) -> None:
        os.killpg(self.proc.pid, signal.SIGINT)  # a terminal signals its foreground group

    def left(self) -> list[int]:
        return sorted(pid for pid in self.seen | {self.proc.pid} if _alive(pid))

    def kill(self) -> None:
        for pid in self.left():
            os.kill(pid, signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def make_run(settings, private_redis, tmp_path):
    """A `make run` of the test's own (not yet started): its own PORT,
    FLOWER_PORT, EMBEDDED_MONGO_PORT, queue namespace, Redis and var/ folder."""
    port, _, _ = private_redis
    overrides = {
        "PORT": free_port(),
        "FLOWER_PORT": free_port(),
        "EMBEDDED_MONGO_PORT": free_port(),
        "QUEUE_NAMESPACE": f"{settings.QUEUE_NAMESPACE}-make-run-{tmp_path.name[-12:]}",
        "REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "RABBITMQ_URL": settings.RABBITMQ_URL,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "DEMO_FLIGHTS": 0,
        "LOG_LEVEL": "WARNING",
        # Small, on a machine the rest of the suite shares.
        "WEB_WORKERS": 1,
        "WEB_THREADS": 8,
        "MAX_WAITERS": 4,
        "WORKER_CONCURRENCY": 2,
        "BACKGROUND_CONCURRENCY": 1,
    }
    env = {k: v for k, v in os.environ.items() if k != "MONGODB_URI"}  # the embedded one
    env.update({name: str(value) for name, value in overrides.items()})
    stack = MakeRun(load_settings(env), tmp_path / "var", tmp_path / "make-run.log")
    stack.start(env)
    yield stack
    if stack.left():
        stack.kill()
    delete_queues(stack.settings)


def _customer(stack: MakeRun) -> dict[str, str]:
    creds = dict(line.split("=", 1) for line in (stack.var / "credentials.env").read_text().split())
    return {"Authorization": f"Bearer {creds['DEMO_CUSTOMER_KEY']}"}


def _migrations(stack: MakeRun) -> set[str]:
    """The marks of the data migrations run on the stack's (embedded) database."""
    client = connect_mongo(replace(stack.settings, MONGODB_URI=database_uri(stack.settings)))
    try:
        return {doc["_id"] for doc in database(client).migrations.find()}
    finally:
        client.close()


def _restarts(stack: MakeRun) -> dict[str, float]:
    text = requests.get(stack.base + "/metrics", headers=ADMIN, timeout=10).text
    families = text_string_to_metric_families(text)
    family = next(f for f in families if f.name == "radiantgo_process_restarts")
    return {sample.labels["program"]: sample.value for sample in family.samples}


@pytest.mark.slow(reason="runs the whole stack: start, a restart, a stop")
def test_make_run_restarts_a_killed_worker_and_ctrl_c_leaves_no_process(make_run):
    stack = make_run
    stack.wait_serving()
    assert _migrations(stack) == {CAPACITY_MIGRATION, VOLUME_MIGRATION, LIST_KEYS_MIGRATION}
    # The background worker (and its pool) runs niced, in the session (one
    # autogroup) of the processes it competes with.
    background, web = stack.info("background")["pid"], stack.info("web")["pid"]
    niced = {background, *_pool(background, stack.settings.BACKGROUND_CONCURRENCY)}
    assert {os.getpriority(os.PRIO_PROCESS, pid) for pid in niced} == {
        stack.settings.BACKGROUND_NICE
    }
    assert os.getsid(background) == os.getsid(web) == stack.supervisor().getPID()
    assert _restarts(stack)["worker"] == 0

    worker = stack.info("worker")["pid"]
    pool = _pool(worker, stack.settings.WORKER_CONCURRENCY)
    stack.processes()
    os.kill(worker, signal.SIGKILL)
    _wait_until(
        lambda: stack.info("worker")["pid"] not in (0, worker), 30, "the worker was not restarted"
    )
    _wait_until(lambda: not any(map(_alive, pool)), 10, "the dead worker's pool lives on")
    health = requests.get(stack.base + "/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "healthy", health.text
    made = requests.post(
        stack.base + "/api/bookings",
        json=booking_body(),
        headers={**_customer(stack), "Prefer": "wait=10"},
        timeout=30,
    )
    assert made.status_code == 201, made.text  # the restarted worker booked it
    _wait_until(lambda: _restarts(stack)["worker"] == 1, 10, "the restart was not counted")
    assert "exited: worker (terminated by SIGKILL; not expected)" in stack.printed()

    stack.processes()
    stack.ctrl_c()
    _wait_until(lambda: not stack.left(), 15, f"left after Ctrl-C: {stack.left()}")
    assert stack.proc.wait(1) == 0
    assert "stopped: mongo" in stack.printed()


@pytest.mark.slow(reason="runs the whole stack, then stops it")
def test_a_second_ctrl_c_kills_every_process_at_once(make_run):
    stack = make_run
    stack.wait_serving()
    web = stack.info("web")["pid"]
    os.kill(web, signal.SIGSTOP)  # a process that does not stop when asked
    stack.ctrl_c()
    # The others stop; the ingress would be killed only STOP_WAIT_S after the first Ctrl-C.
    _wait_until(lambda: "stopped: worker" in stack.printed(), 10, "no graceful stop")
    assert _alive(web)
    second = time.monotonic()
    stack.ctrl_c()
    _wait_until(lambda: not stack.left(), 15, f"left after two Ctrl-C: {stack.left()}")
    assert time.monotonic() - second < supervision.STOP_WAIT_S / 2
    assert "Killing every process now." in stack.printed()
    assert f"killing 'web' ({web}) with SIGKILL" not in stack.printed()
