"""Closed-loop rounds against a server, and the floor-app comparison built on them.

A round keeps `connections` requests in flight for `seconds` and measures the
server's process tree's CPU besides; rounds of two servers run in back-to-back
pairs in alternating order (against_floor: an app against a floor app doing the
least the same request needs, under the same gunicorn).
"""

import contextlib
import http.client
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from core.settings import Settings
from perf.harness import percentiles
from tools.processes import (
    start_ingress,
    stop,
)


@dataclass(frozen=True)
class Call:
    """One HTTP request a closed-loop client sends, again and again."""

    method: str
    path: str
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()


def closed_loop(base: str, calls: list[Call], seconds: float, connections: int, expect: int):
    """`connections` threads, each one keep-alive connection sending the next call
    (cycling over `calls` from its own offset) as soon as the last is answered,
    until `seconds` have passed. http.client, not requests: the client shares the
    machine, so the lighter it is the less it weighs on what is measured."""
    url = urlsplit(base)
    latencies: list[list[float]] = [[] for _ in range(connections)]
    sizes: list[list[int]] = [[] for _ in range(connections)]
    errors: dict[str, int] = {}
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client(i: int) -> None:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        n = i * len(calls) // connections
        try:
            while time.perf_counter() < deadline:
                call = calls[n % len(calls)]
                n += 1
                sent = time.perf_counter()
                try:
                    conn.request(call.method, call.path, body=call.body, headers=dict(call.headers))
                    response = conn.getresponse()
                    body = response.read()
                    outcome = response.status
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()  # reconnects on the next request
                    outcome, body = type(exc).__name__, b""
                if outcome == expect:
                    latencies[i].append((time.perf_counter() - sent) * 1000)
                    sizes[i].append(len(body))
                else:
                    with lock:
                        errors[str(outcome)] = errors.get(str(outcome), 0) + 1
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "wall_s": time.perf_counter() - started,
        "latencies_ms": [ms for mine in latencies for ms in mine],
        "sizes": [size for mine in sizes for size in mine],
        "errors": errors,
    }


def measured_round(
    pid: int, base: str, calls: list[Call], seconds: float, connections: int, expect: int
):
    """closed_loop, with the CPU of the server's process tree (pid) and of this client."""
    from perf.profiling import tree_cpu_s

    cpu_before, client_before = tree_cpu_s(pid), time.process_time()
    load = closed_loop(base, calls, seconds, connections, expect)
    cpu = tree_cpu_s(pid) - cpu_before
    client_cpu = time.process_time() - client_before
    ok = len(load["latencies_ms"])
    sent = ok + sum(load["errors"].values())
    return {
        **load,
        "rps": ok / load["wall_s"],
        "ok": ok,
        "cpu_ms_per_request": 1000 * cpu / ok if ok else None,
        "client_cpu_ms_per_request": 1000 * client_cpu / sent if sent else None,
    }


def summarize_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds of measured_round, with each round's figures."""
    rps = [r["rps"] for r in rounds]
    cpu = [r["cpu_ms_per_request"] for r in rounds if r["cpu_ms_per_request"] is not None]
    client = [r["client_cpu_ms_per_request"] for r in rounds if r["client_cpu_ms_per_request"]]
    sizes = [s for r in rounds for s in r["sizes"]]
    errors: dict[str, int] = {}
    for r in rounds:
        for outcome, count in r["errors"].items():
            errors[outcome] = errors.get(outcome, 0) + count
    return {
        "rps": round(statistics.median(rps), 1),
        "rps_rounds": [round(x, 1) for x in rps],
        "cpu_ms_per_request": round(statistics.median(cpu), 3) if cpu else None,
        "cpu_ms_per_request_rounds": [round(c, 3) for c in cpu],
        "client_cpu_ms_per_request": round(statistics.median(client), 3) if client else None,
        "requests": sum(r["ok"] for r in rounds),
        "body_bytes_mean": round(statistics.fmean(sizes)) if sizes else None,
        "latency_ms": percentiles([ms for r in rounds for ms in r["latencies_ms"]]),
        "errors": errors,
    }


def pair_orders(pairs: int, first: str, second: str) -> list[list[str]]:
    """first second, second first, ...: each pair back to back, in alternating
    order, so a machine speeding up or slowing down weighs on both alike."""
    return [[first, second] if i % 2 == 0 else [second, first] for i in range(pairs)]


def alternating(
    pairs: int, first: str, second: str, measure: Callable[[str], Any]
) -> dict[str, list[Any]]:
    """measure(name) round by round in pair_orders' order: each name's results."""
    results: dict[str, list[Any]] = {first: [], second: []}
    for order in pair_orders(pairs, first, second):
        for name in order:
            results[name].append(measure(name))
    return results


@dataclass(frozen=True)
class Target:
    """A server measured in closed-loop rounds: its process (for its CPU), its
    base URL and the calls sent to it."""

    pid: int
    base: str
    calls: list[Call]


def floor_rounds(
    targets: dict[str, Target],
    pairs: int,
    seconds: float,
    connections: int,
    expect: int,
    after_round: Callable[[], Any] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """measured_round of the floor and the app (`targets`' two names, the floor
    first) in back-to-back pairs; `after_round` runs after each round."""

    def measure(name: str) -> dict[str, Any]:
        t = targets[name]
        measured = measured_round(t.pid, t.base, t.calls, seconds, connections, expect)
        if after_round is not None:
            after_round()
        return measured

    return alternating(pairs, *targets, measure)


@contextlib.contextmanager
def floor_server(settings: Settings, app_target: str, name: str) -> Iterator[tuple[Any, str]]:
    """A second gunicorn serving `app_target` with the ingress's settings (a
    floor app): (process, base URL), stopped at the block's end."""
    work = Path(tempfile.mkdtemp(prefix=f"radiantgo-bench-{name}-"))
    floor = None
    try:
        floor, base = start_ingress(settings, work / "floor.log", app_target=app_target)
        yield floor, base
    finally:
        if floor is not None:
            stop(floor)
        shutil.rmtree(work, ignore_errors=True)


def against_floor(results: dict[str, list[dict[str, Any]]], floor: str, app: str) -> dict:
    """Both apps' summaries, and `app`'s requests/s over the floor's: of the medians,
    and pair by pair; `error_free` says whether the comparison means anything."""
    figures = {name: summarize_rounds(rounds) for name, rounds in results.items()}
    pairs = [
        round(a["rps"] / f["rps"], 3) if f["rps"] else None
        for f, a in zip(results[floor], results[app], strict=True)
    ]
    ratio = figures[app]["rps"] / figures[floor]["rps"] if figures[floor]["rps"] else 0.0
    return {
        **figures,
        "rps_ratio": round(ratio, 3),
        "rps_ratio_pairs": pairs,
        "error_free": not (figures[floor]["errors"] or figures[app]["errors"]),
    }


def floor_report_lines(f: dict, labels: dict[str, str], unit: str) -> list[str]:
    """Per app (labels: name -> endpoint): requests/s, gunicorn CPU per `unit`,
    latency, errors, mean body size where known, and the client's own CPU."""
    lines = []
    for name, label in labels.items():
        m = f[name]
        rps_rounds = " ".join(f"{x:.0f}" for x in m["rps_rounds"])
        cpu_rounds = " ".join(f"{c:.2f}" for c in m["cpu_ms_per_request_rounds"])
        lat = m["latency_ms"]
        p50 = f"{lat['p50']:.1f}" if lat["p50"] is not None else "-"
        p95 = f"{lat['p95']:.1f}" if lat["p95"] is not None else "-"
        cpu = m["cpu_ms_per_request"]
        errors = sum(m["errors"].values())
        detail = f" {m['errors']}" if errors else ""
        body = f"   body {m['body_bytes_mean']} B mean" if m["body_bytes_mean"] else ""
        lines += [
            f"  {name:<8}{label}",
            f"          {m['rps']:.0f} requests/s (median; rounds {rps_rounds})",
            f"          gunicorn CPU {cpu:.2f} ms/{unit} (median; rounds {cpu_rounds})"
            if cpu is not None
            else "          gunicorn CPU -",
            f"          latency p50 {p50} ms  p95 {p95} ms   errors {errors}{detail}{body}"
            f"   (client CPU {m['client_cpu_ms_per_request'] or 0:.2f} ms/request)",
        ]
    return lines


def ratio_line(f: dict, verdict: str) -> str:
    pairs = " ".join(f"{r:.2f}" if r is not None else "-" for r in f["rps_ratio_pairs"])
    return (
        f"  requests/s ingress/floor {f['rps_ratio']:.2f} (medians; pairs {pairs})"
        f"   (goal >= {f['goal_ratio']}: {verdict})"
    )
