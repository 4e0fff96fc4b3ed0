"""Percentiles, computed one way for /metrics, lock figures and benchmarks alike."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

POINTS = (0.50, 0.95, 0.99)


def percentiles(
    values: Iterable[float],
    points: Sequence[float] = POINTS,
    *,
    digits: int = 2,
    maximum: bool = False,
) -> dict[str, float | None]:
    """Nearest-rank percentiles of `values` keyed "p50", "p95", ... (None when
    there are no values), and with `maximum` the largest value as "max"."""
    ordered = sorted(values)
    last = len(ordered) - 1

    def pick(index: int) -> float | None:
        return round(ordered[index], digits) if ordered else None

    figures = {f"p{round(p * 100)}": pick(min(last, int(p * len(ordered)))) for p in points}
    if maximum:
        figures["max"] = pick(last)
    return figures
