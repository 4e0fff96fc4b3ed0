"""The report's PNG plots: a Locust scenario over time, the burst, the goals."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from perf.goals import offered_text
from perf.locust_stats import AGGREGATED, PLOTTED, POLL
from perf.markdown import amount

PLOT_FLOOR = 0.01


def plot_scenario(history: dict[str, dict[str, list]], title: str, path: Path) -> bool:
    names = [n for n in PLOTTED if n in history and any(history[n]["p50"])]
    if not names:
        return False
    t0 = min(t for s in history.values() for t in s["t"] if t is not None)
    fig, axes = plt.subplots(
        len(names) + 1, 1, figsize=(9, 2.1 * (len(names) + 1)), sharex=True, squeeze=False
    )
    axes = axes[:, 0]
    for ax, name in zip(axes, names, strict=False):
        s = history[name]
        t = [x - t0 for x in s["t"]]
        for p, style in (("p50", "-"), ("p95", "--"), ("p99", ":")):
            ax.plot(t, [v if v else math.nan for v in s[p]], style, label=p)
        ax.set_ylabel("ms")
        ax.set_yscale("log")
        ax.set_title(name, fontsize=9, loc="left")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    ax = axes[-1]
    for name in [*names, POLL]:
        if name in history:
            s = history[name]
            t = [x - t0 for x in s["t"]]
            ax.plot(t, [math.nan if v is None else v for v in s["per_s"]], label=name)
    ax.set_ylabel("per s")
    ax.set_xlabel("seconds since start")
    ax.set_title("throughput (completed per second)", fontsize=9, loc="left")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    if AGGREGATED in history:
        twin = ax.twinx()
        s = history[AGGREGATED]
        twin.plot([x - t0 for x in s["t"]], s["users"], color="grey", alpha=0.4, label="users")
        twin.set_ylabel("users", color="grey")
    fig.suptitle(f"{title}: latency percentiles (10 s window) and throughput", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def plot_burst(figures: dict[str, Any], path: Path) -> bool:
    """perf.bench_burst over time: each queue's ready depth, accept latency per
    second, and requests and jobs finished per second; the schedule's end marked."""
    series = figures.get("series") or {}
    depths, seconds = series.get("depths") or [], series.get("per_second") or []
    if not depths and not seconds:
        return False
    fig, (ax_depth, ax_latency, ax_rate) = plt.subplots(3, 1, figsize=(9, 7.5), sharex=True)
    t = [s["t"] for s in depths]
    for queue in depths[0]["depths"] if depths else []:
        ax_depth.plot(t, [s["depths"][queue] for s in depths], label=queue)
    ax_depth.set_ylabel("ready messages")
    ax_depth.set_title("queue depth (sampled every 0.5 s)", fontsize=9, loc="left")
    ax_depth.legend(fontsize=7, loc="upper left")
    sent_t = [row["t"] + 0.5 for row in seconds]  # a second's figures at its middle
    for key, style in (("p50_ms", "-"), ("p95_ms", "--"), ("max_ms", ":")):
        values = [math.nan if row[key] is None else row[key] for row in seconds]
        ax_latency.plot(sent_t, values, style, label=f"{key.removesuffix('_ms')}, 202")
    if any(row.get("unavailable") for row in seconds):
        answered = [
            math.nan if row.get("answer_p95_ms") is None else row["answer_p95_ms"]
            for row in seconds
        ]
        ax_latency.plot(sent_t, answered, "-.", label="p95, 202 and 503")
    lag = [row["max_lag_ms"] or math.nan for row in seconds]
    ax_latency.plot(sent_t, lag, color="grey", alpha=0.6, label="client's max lag")
    if figures.get("sustainable"):  # graceful overload: every answer within 50 ms
        ax_latency.axhline(50, color="tab:red", linewidth=0.8, label="goal p95 50 ms")
    else:  # 10x: the spec's targets
        ax_latency.axhline(200, color="tab:red", linewidth=0.8, label="creates p95 200 ms")
        ax_latency.axhline(100, color="tab:orange", linewidth=0.8, label="updates p95 100 ms")
    ax_latency.set_yscale("log")
    ax_latency.set_ylabel("ms")
    ax_latency.set_title("answer latency, per second of sending", fontsize=9, loc="left")
    ax_latency.legend(fontsize=7, loc="lower right")  # the drain, right, has no requests
    ax_rate.plot(sent_t, [row["accepted"] for row in seconds], label="accepted (202)")
    errors = [row["unavailable"] + row["other_errors"] for row in seconds]
    if any(errors):
        ax_rate.plot(sent_t, [row["unavailable"] for row in seconds], label="503")
        shed = [row.get("shed", 0) for row in seconds]
        if any(shed):
            ax_rate.plot(sent_t, shed, ":", label="of which shed (overloaded)")
        ax_rate.plot(sent_t, [row["other_errors"] for row in seconds], label="other errors")
    finished = series.get("finished_per_second") or []
    ax_rate.plot([i + 0.5 for i in range(len(finished))], finished, label="jobs finished")
    ax_rate.set_ylabel("per s")
    ax_rate.set_xlabel("seconds since the first request")
    ax_rate.set_title("requests and jobs per second", fontsize=9, loc="left")
    ax_rate.legend(fontsize=7, loc="upper right")
    for ax in (ax_depth, ax_latency, ax_rate):
        ax.axvline(figures["seconds"], color="black", linewidth=0.8, linestyle="--")
        ax.grid(True, alpha=0.3)
    ax_depth.set_ylim(bottom=0)
    ax_rate.set_ylim(bottom=0)
    ax_depth.text(
        figures["seconds"],
        0.98,
        " end of the open loop",
        fontsize=7,
        va="top",
        transform=ax_depth.get_xaxis_transform(),
    )
    load = f"{offered_text(figures)} for {figures['seconds']:g} s"
    if figures.get("sustainable"):
        load += f" (twice a sustainable {figures['sustainable']:g} jobs/s)"
    fig.suptitle(f"burst: {load}, then the drain", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def plot_goals(rows: list[dict[str, Any]], path: Path) -> None:
    """How far each figure is from our goal: measured / goal, where below 1 meets it
    (floors inverted: goal / measured; the hit rate as miss rate / allowed 5 %)."""
    judged = [r for r in rows if r["vs_goal"] != "-"]
    fig, ax = plt.subplots(figsize=(9, 0.4 * len(judged) + 1.2))
    for i, row in enumerate(judged):
        ratio = row.get("ratio")
        if ratio is None:
            ax.text(1, i, " not measured", va="center", fontsize=7, color="grey")
            continue
        met = row["vs_goal"] == "met"
        # A log axis has no 0 (a miss rate of 0 %): drawn at the axis' floor.
        shown = max(ratio, PLOT_FLOOR)
        ax.barh(i, shown, color="tab:green" if met else "tab:red")
        label = f" {amount(ratio)}x" if ratio >= PLOT_FLOOR else f" {ratio:g}x (0 on a log axis)"
        ax.text(shown, i, label, va="center", fontsize=7)
    ax.axvline(1, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yticks(range(len(judged)), [r["name"] for r in judged], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("measured / goal (log scale; < 1 meets the goal)")
    ax.set_title("our goals: green met, red missed", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
