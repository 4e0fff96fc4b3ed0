"""Sizing: how many processes and cores a load needs, from measured costs.

Every figure here was measured by `make bench-burst` one kind of job at a
time (`--creates 100 --updates 0` and `--creates 0 --updates 200`, 20 s each,
2026-12-05, every process of the stack on this project's 2-core machine), as
CPU ms per operation of each process group, from the first request to the
last job finished (perf/profiling.py):

- a create accepted and booked (groups of up to 32 per write, 50 ms wait);
- a transition (a depart) accepted and applied;
- a route search answered from the cache (bench_reads) and uncached
  (bench_flights; its join ran in the benchmark's process, here the ingress):
  from `make perf` (perf/results/20261129T180645Z).

The embedded MongoDB wire server (SecantusDB) is the "mongodb" column: a real
mongod costs less per operation, so its figures are an upper bound there.

    python -m core.sizing          # the "Scaling out" table of docs/operations.md
"""

from __future__ import annotations

import math
from dataclasses import dataclass

GROUPS = ("ingress", "worker", "mongodb", "rabbitmq", "redis")

# CPU ms per operation, by process group.
COST_MS: dict[str, dict[str, float]] = {
    "create": {"ingress": 3.21, "worker": 1.67, "mongodb": 2.10, "rabbitmq": 0.77, "redis": 0.29},
    "transition": {
        "ingress": 3.42,
        "worker": 1.10,
        "mongodb": 5.02,
        "rabbitmq": 0.70,
        "redis": 0.37,
    },
    "search_cached": {"ingress": 0.77, "redis": 0.05},
    "search_uncached": {"ingress": 8.4, "mongodb": 21.0},
}


def _serial_rate(operation: str) -> float:
    """Jobs/s of one worker process doing `operation` one after another: its
    own CPU, then waiting on MongoDB for as long as MongoDB works for it."""
    cost = COST_MS[operation]
    return 1000 / (cost["worker"] + cost["mongodb"])


# Jobs one worker process works off per second, by queue. Bulk: the status
# updates one process applies per second (its slower kind), from bench_bulk.
JOBS_PER_PROCESS_S = {
    "bookings": _serial_rate("create"),
    "status": _serial_rate("transition"),
    "bulk": 268.0,
    "maintenance": 1.0,
}

CACHE_HIT_RATE = 0.95  # route searches, the spec's target
CORES_PER_MACHINE = 2
HEADROOM = 0.7  # plan each group at 70 % of its cores


@dataclass(frozen=True)
class Load:
    """Operations per second."""

    creates: float
    transitions: float
    searches: float

    def scaled(self, factor: float) -> Load:
        return Load(self.creates * factor, self.transitions * factor, self.searches * factor)


# The spec's peak (10 bookings/s, 30 status updates/s); searches: the Locust
# mix's share, 50/s.
SPEC_PEAK = Load(creates=10, transitions=30, searches=50)


def cores(load: Load) -> dict[str, float]:
    """CPU cores each process group is busy with under `load`."""
    operations = {
        "create": load.creates,
        "transition": load.transitions,
        "search_cached": load.searches * CACHE_HIT_RATE,
        "search_uncached": load.searches * (1 - CACHE_HIT_RATE),
    }
    return {
        group: sum(rate * COST_MS[op].get(group, 0.0) for op, rate in operations.items()) / 1000
        for group in GROUPS
    }


def plan(load: Load) -> dict[str, int]:
    """Processes (ingress: gunicorn workers; worker: prefork processes for the
    interactive queues) and machines of CORES_PER_MACHINE cores for `load`."""
    busy = cores(load)
    ingress = max(2, math.ceil(busy["ingress"] / HEADROOM))
    workers = max(
        2,
        math.ceil(load.creates / JOBS_PER_PROCESS_S["bookings"] / HEADROOM)
        + math.ceil(load.transitions / JOBS_PER_PROCESS_S["status"] / HEADROOM),
    )
    return {
        "ingress_processes": ingress,
        "worker_processes": workers,
        "machines": math.ceil(sum(busy.values()) / HEADROOM / CORES_PER_MACHINE),
    }


def workers_to_add(queue: str, growth_per_s: float) -> int:
    """Worker processes that would stop `queue` from growing by `growth_per_s`."""
    return max(1, math.ceil(growth_per_s / JOBS_PER_PROCESS_S[queue]))


def table() -> str:
    """The "Scaling out" table of docs/operations.md."""
    lines = [
        "| load | creates / transitions / searches per s | cores busy: ingress, worker,"
        " MongoDB, RabbitMQ, Redis | ingress / worker processes | 2-core machines |",
        "|---|---|---|---|---|",
    ]
    for name, factor in (("spec peak", 1), ("10x", 10), ("100x", 100)):
        load = SPEC_PEAK.scaled(factor)
        busy = cores(load)
        need = plan(load)
        lines.append(
            f"| {name} | {load.creates:,.0f} / {load.transitions:,.0f} / {load.searches:,.0f} | "
            + ", ".join(f"{busy[g]:.2f}" for g in GROUPS)
            + f" | {need['ingress_processes']} / {need['worker_processes']}"
            f" | {need['machines']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
