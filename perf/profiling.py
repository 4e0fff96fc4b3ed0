"""Where the time of one measured phase goes: CPU seconds per process group
(psutil) and, for the Python processes, py-spy's stacks summed up into the
functions that use the time.

    with profiled("create_drain", stack_processes(stack), out_dir, items=2000) as profile:
        ...                            # the measured phase
    figures["profile"] = {"create_drain": profile}    # filled in on leaving the block

CPU is counted for every process of a group (a pid and its descendants, so the
Celery worker's prefork children and gunicorn's workers too), for this process
(the client) alone, for py-spy itself, and for the rest of the machine ("other":
the machine's busy time minus all of those). One py-spy runs per sampled Python
process (`--subprocesses` on the worker measured far too heavy), with --gil: it
reads only the thread that holds the GIL, the one running Python, where reading
every thread cost 14 % of a core per process at 100 Hz (a 16-thread process,
measured; 0.8 % with --gil), and a create drain with 13 processes sampled lost
three quarters of its throughput
(52/s against 190-205/s). The price: time in C code that releases the
GIL (socket I/O, the kernel) is in the CPU figures but in no stack. A py-spy
that cannot start (missing, ptrace not permitted) is recorded as an error and
the CPU figures are kept.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import psutil

PY_SPY = Path(sys.executable).parent / "py-spy"
SAMPLED = ("SecantusDB", "worker", "ingress")  # the Python processes of a stack
CLIENT = "client"  # this process: the benchmark's own threads (and route search in-process)
OVERHEAD = "py-spy"
OTHER = "other"  # the machine's busy time that no group accounts for
TOP = 12
TRUNK_PCT = 90  # a frame in this % of a group's samples or more is an entry point or a loop
OUR_CODE = ("core/", "workers/", "ingress/")  # the repository's packages, as py-spy names files
ATTACH_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 60.0

# A sample whose innermost frame is one of these is a thread waiting (on a
# socket, a pipe, a lock, a timer), not working. With --gil such a thread has
# released the GIL and is not sampled at all, save at the instant it enters or
# leaves the wait. Names as py-spy prints them: the qualified name ("Class.method")
# after the file. A bare name is a wait wherever it is; a few names that are
# too general to say so alone are waits in the files named with them.
IDLE_FUNCTIONS = frozenset(
    {
        "wait",
        "wait_for_signals",  # gunicorn's arbiter
        "select",
        "poll",
        "accept",
        "sleep",
        "recv",
        "recv_into",
        "readinto",
        "_read_from_socket",  # redis-py, waiting for a reply
        "_recv_exactly",  # SecantusDB, waiting for a client's next message
        "_readable",  # SecantusDB, select() before that read
        "_wait_for_tstate_lock",
    }
)
IDLE_FRAMES = frozenset(
    {
        "amqp/transport.py:TCPTransport._read",  # waiting for the broker
        "billiard/connection.py:Connection._recv",  # a prefork child waiting for a task
        "concurrent/futures/thread.py:_worker",  # a pool thread waiting for work
        "pymongo/periodic_executor.py:PeriodicExecutor._run",  # pymongo's monitors, asleep
    }
)


# This module's own frames: when the client is sampled, its psutil snapshots at
# either end of the phase are the profiler at work, not the benchmark.
PROFILER_FILE = "perf/profiling.py"


def idle_frame(key: str) -> bool:
    """Whether a frame ('file:Class.method', see frame_key) is a wait."""
    function = key.rsplit(":", 1)[-1]
    return key in IDLE_FRAMES or function.rsplit(".", 1)[-1] in IDLE_FUNCTIONS


# -- the processes ------------------------------------------------------------------


def pids_named(name: str) -> list[int]:
    return [p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == name]


def stack_processes(stack) -> dict[str, list[int]]:
    """The process groups of an isolated stack (perf.harness.Stack), by root pid.
    RabbitMQ and Redis are the machine's own: shared with anything else running."""
    return {
        "SecantusDB": [stack.mongo.pid],
        "worker": [stack.worker.pid],
        "ingress": [stack.ingress.pid],
        "RabbitMQ": pids_named("beam.smp"),
        "Redis": pids_named("redis-server"),
    }


def _with_descendants(pids: Iterable[int]) -> list[int]:
    found = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            found += [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
    return found


def tree_cpu_s(pid: int) -> float:
    """User + system seconds of a process and its descendants, live or already reaped
    (a reaped child's time moves into its parent's children_* fields)."""
    try:
        root = psutil.Process(pid)
        t = root.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        children = root.children(recursive=True)
    except psutil.Error:
        return 0.0
    for child in children:
        with contextlib.suppress(psutil.Error):
            c = child.cpu_times()
            total += c.user + c.system
    return total


def own_cpu_s(pid: int) -> float:
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return t.user + t.system


def machine_busy_s() -> float:
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq + t.steal


def cpu_snapshot(processes: dict[str, list[int]], spies: list[Spy]) -> dict[str, float]:
    snapshot = {group: sum(tree_cpu_s(pid) for pid in pids) for group, pids in processes.items()}
    snapshot[CLIENT] = own_cpu_s(os.getpid())  # not its children: the stack is among them
    snapshot[OVERHEAD] = sum(own_cpu_s(spy.proc.pid) for spy in spies if spy.proc)
    snapshot["machine"] = machine_busy_s()
    return snapshot


def cpu_figures(
    before: dict[str, float], after: dict[str, float], wall_s: float, items: int | None
) -> dict[str, Any]:
    used = {group: max(0.0, after[group] - before[group]) for group in before}
    machine = used.pop("machine")
    used[OTHER] = max(0.0, machine - sum(used.values()))
    total = sum(used.values())

    def figures(seconds: float) -> dict[str, float]:
        entry = {"cpu_s": round(seconds, 3), "share": round(seconds / total, 3) if total else 0}
        if items:
            entry["cpu_ms_per_item"] = round(1000 * seconds / items, 3)
        return entry

    result: dict[str, Any] = {
        "wall_s": round(wall_s, 3),
        "items": items,
        "cpus": os.cpu_count(),
        "cpu_total_s": round(total, 3),
        "cores_busy": round(total / wall_s, 2) if wall_s else None,
        "cpu": {group: figures(seconds) for group, seconds in used.items()},
    }
    if items:
        result["cpu_ms_per_item_total"] = round(1000 * total / items, 3)
    return result


# -- py-spy ---------------------------------------------------------------------------


class Spy:
    """One `py-spy record` on one pid, raw collapsed stacks into `output`."""

    def __init__(self, group: str, pid: int, output: Path, rate: int):
        self.group, self.pid, self.output = group, pid, output
        self.lines: list[str] = []
        self.attached = threading.Event()
        self.error: str | None = None
        self.proc: subprocess.Popen | None = None
        command = [str(PY_SPY), "record", "--nonblocking", "--gil", "--format", "raw"]
        command += ["--rate", str(rate), "--pid", str(pid), "--output", str(output)]
        try:
            self.proc = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        except OSError as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            return
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            if "Sampling process" in line:  # printed once py-spy has attached
                self.attached.set()
        self.attached.set()  # py-spy exited: whatever it said is in self.lines

    def wait_attached(self, deadline: float) -> None:
        if self.proc is None:
            return
        if not self.attached.wait(max(0.0, deadline - time.monotonic())):
            self.error = f"py-spy did not attach within {ATTACH_TIMEOUT_S:.0f} s"
        elif self.proc.poll() is not None and not self.output.exists():
            self.error = self._said() or f"py-spy exited with {self.proc.returncode}"

    def interrupt(self) -> None:
        """SIGINT, as Control-C: py-spy writes its output on the way out."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

    def finish(self) -> None:
        """Wait for the output that interrupt() asked for."""
        if self.proc is None:
            return
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            self.error = self.error or f"py-spy did not stop within {STOP_TIMEOUT_S:.0f} s"
        self.reader.join(5)
        if self.error is None and not self.output.exists():
            self.error = self._said() or f"py-spy wrote nothing (exit {self.proc.returncode})"

    def _said(self) -> str:
        errors = [line for line in self.lines if line.startswith("Error")]
        return (errors or self.lines or [""])[0][:300]


def start_spies(
    name: str, targets: dict[str, list[int]], out_dir: Path, rate: int
) -> tuple[list[Spy], list[str]]:
    """A py-spy on every pid of `targets` (group -> pids), once each has attached."""
    if not PY_SPY.exists():
        return [], [f"py-spy not found at {PY_SPY}"]
    spies = [
        Spy(group, pid, out_dir / f"py-spy_{name}_{group}_{pid}.txt", rate)
        for group, pids in targets.items()
        for pid in pids
    ]
    deadline = time.monotonic() + ATTACH_TIMEOUT_S
    for spy in spies:
        spy.wait_attached(deadline)
    return spies, []


def spy_targets(
    processes: dict[str, list[int]], sampled: Iterable[str], sample_client: bool
) -> dict[str, list[int]]:
    """The pids to sample: every process of each sampled group (children included),
    and this one if asked (where the benchmark runs product code in-process)."""
    targets = {group: _with_descendants(processes.get(group, [])) for group in sampled}
    if sample_client:
        targets[CLIENT] = [os.getpid()]
    return targets


# -- the collapsed stacks --------------------------------------------------------------

FRAME = re.compile(r"(?P<function>.*) \((?P<file>[^()]*?)(?::[0-9]+)?\)")


def frame_key(frame: str) -> str:
    """'handle (secantus/server.py:120)' -> 'secantus/server.py:handle' (lines merged)."""
    match = FRAME.fullmatch(frame)
    return f"{match['file']}:{match['function']}" if match else frame


def parse_raw(text: str) -> Counter[tuple[str, ...]]:
    """py-spy's raw format, 'outer;...;inner <count>' per line -> sample counts per stack."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in text.splitlines():
        frames, _, count = line.rstrip().rpartition(" ")
        if frames and count.isdigit():
            stacks[tuple(frame_key(f) for f in frames.split(";"))] += int(count)
    return stacks


def aggregate(stacks: Counter[tuple[str, ...]], top: int = TOP) -> dict[str, Any]:
    """Top functions by self and by inclusive samples, as % of the non-idle samples.

    The inclusive ranking leaves out what says nothing: the trunk (frames in
    TRUNK_PCT % of the samples or more: thread bootstrap, the server loop) and
    pass-through frames (all of whose samples are in one callee: the prefork
    child's start-up chain), so that a chain shows as its innermost frame.
    `ours` ranks the repository's own functions (OUR_CODE) inclusively, all of them.
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    calls: Counter[tuple[str, str]] = Counter()
    total = idle = profiler = 0
    for stack, count in stacks.items():
        total += count
        if not stack or idle_frame(stack[-1]):
            idle += count
            continue
        if any(key.startswith(PROFILER_FILE) for key in stack):
            profiler += count
            continue
        own[stack[-1]] += count
        for key in set(stack):  # a recursive function counts once per sample
            inclusive[key] += count
        for call in set(pairwise(stack)):
            if call[0] != call[1]:
                calls[call] += count
    working = total - idle - profiler
    widest_call: Counter[str] = Counter()
    for (caller, _), n in calls.items():
        widest_call[caller] = max(widest_call[caller], n)

    def telling(key: str, n: int) -> bool:
        return 100 * n < TRUNK_PCT * working and not (own[key] == 0 and widest_call[key] == n)

    def ranked(counter: Counter[str], keep=lambda key, n: True) -> list[dict[str, Any]]:
        kept = [(key, n) for key, n in counter.most_common() if keep(key, n)][:top]
        return [{"function": key, "pct": round(100 * n / working, 1)} for key, n in kept]

    return {
        "samples": total,
        "idle_samples": idle,
        "profiler_samples": profiler,
        "self": ranked(own),
        "inclusive": ranked(inclusive, telling),
        "ours": ranked(inclusive, lambda key, n: key.startswith(OUR_CODE)),
    }


def stack_figures(spies: list[Spy]) -> dict[str, Any]:
    by_group: dict[str, Counter[tuple[str, ...]]] = {}
    processes: Counter[str] = Counter()
    for spy in spies:
        if spy.error is None and spy.output.exists():
            by_group.setdefault(spy.group, Counter()).update(parse_raw(spy.output.read_text()))
            processes[spy.group] += 1
    return {
        group: {"processes": processes[group], **aggregate(stacks)}
        for group, stacks in by_group.items()
    }


# -- a terminal summary ------------------------------------------------------------------


def describe(profiles: dict[str, dict[str, Any]], top: int = 3) -> str:
    """A few lines per profiled phase, for a benchmark run from the command line."""
    lines = []
    for name, p in profiles.items():
        items = f"{p['items']} items, " if p.get("items") else ""
        lines.append(f"profile {name}: {items}{p['wall_s']:.1f} s, {p['cores_busy']} cores busy")
        for group, c in p["cpu"].items():
            per_item = f"{c['cpu_ms_per_item']:7.2f} ms/item" if "cpu_ms_per_item" in c else ""
            functions = ", ".join(
                f"{e['function']} {e['pct']:.0f}%"
                for e in p["stacks"].get(group, {}).get("self", [])[:top]
            )
            lines.append(f"  {group:<11} {c['cpu_s']:6.2f} CPU s {per_item}  {functions}")
        lines += [f"  py-spy: {error}" for error in p["errors"]]
    return "\n".join(lines)


# -- the context manager ------------------------------------------------------------------


@contextlib.contextmanager
def profiled(
    name: str,
    processes: dict[str, list[int]],
    out_dir: Path,
    *,
    items: int | None = None,
    rate: int = 100,
    sampled: Iterable[str] = SAMPLED,
    sample_client: bool = False,
) -> Iterator[dict[str, Any]]:
    """Profile the block: yields a dict filled in with the figures on leaving it,
    also written to <out_dir>/profile_<name>.json beside py-spy's raw files."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spies, errors = start_spies(name, spy_targets(processes, sampled, sample_client), out_dir, rate)
    result: dict[str, Any] = {"name": name, "rate_hz": rate}
    before = cpu_snapshot(processes, spies)
    started = time.perf_counter()
    try:
        yield result
    finally:
        wall = time.perf_counter() - started
        after = cpu_snapshot(processes, spies)  # before stopping py-spy: its time is counted
        for spy in spies:
            spy.interrupt()
        for spy in spies:
            spy.finish()
        result.update(cpu_figures(before, after, wall, items))
        result["stacks"] = stack_figures(spies)
        result["errors"] = errors + [
            f"{spy.group} pid {spy.pid}: {spy.error}" for spy in spies if spy.error
        ]
        result["raw_files"] = [spy.output.name for spy in spies if spy.output.exists()]
        (out_dir / f"profile_{name}.json").write_text(json.dumps(result, indent=2))


@contextlib.contextmanager
def maybe_profiled(
    profile_dir: Path | None, name: str, stack, **options: Any
) -> Iterator[dict[str, Any]]:
    """profiled() around the block on the stack's processes, or nothing at all when
    profile_dir is None (then the block runs exactly as without this wrapper)."""
    if profile_dir is None:
        yield {}
        return
    with profiled(name, stack_processes(stack), profile_dir, **options) as result:
        yield result
