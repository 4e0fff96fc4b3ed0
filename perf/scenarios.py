"""The Locust scenarios of `make perf`: offered rates per user class, and the
Zipf popularity route searches draw from. perf/run_perf.py and
perf/locustfile.py both read them; this module imports no Locust (importing
locust monkey-patches the process with gevent).
"""

from __future__ import annotations

import itertools
import random
from datetime import date, timedelta

from core.settings import Settings
from tools.flights import AIRPORTS as GENERATED_AIRPORTS

# Offered rates (requests/s) at scale 1. The spec's peak is 10 creates/s and 30
# status updates/s; it names no route-search rate, 20/s is ours.
SCENARIOS: dict[str, dict[str, float]] = {
    "create": {"CreateBooking": 10.0},
    "updates": {"DepartBooking": 30.0},
    "routes": {"RouteSearch": 20.0},
    "mixed": {"CreateBooking": 10.0, "DepartBooking": 30.0, "RouteSearch": 20.0},
}
SCENARIO_ORDER = ("create", "updates", "routes", "mixed")
ZIPF_EXPONENT = 1.1
ROUTE_DAYS = 2  # today and tomorrow (UTC): what the cache warmer keeps warm
ZIPF_SEED = 11
AIRPORTS = sorted(GENERATED_AIRPORTS)  # the schedule generator's airports
DEFAULT_POPULAR = Settings.POPULAR_ROUTES


def scenario_users(scenario: str, scale: float, period: float) -> dict[str, int]:
    """Users per class: the class's offered rate x the period (at least 1)."""
    rates = SCENARIOS[scenario]
    return {name: max(1, round(rate * scale * period)) for name, rate in rates.items()}


def offered_rates(scenario: str, scale: float, period: float) -> dict[str, float]:
    """The rates the users can offer (users / period): what the report calls offered."""
    return {name: n / period for name, n in scenario_users(scenario, scale, period).items()}


def route_ranking(popular: str, seed: int = ZIPF_SEED) -> list[tuple[str, str]]:
    """Every ordered airport pair: the configured popular routes first, the rest shuffled."""
    first = []
    for pair in popular.split(","):
        origin, _, destination = pair.strip().upper().partition("-")
        if origin in AIRPORTS and destination in AIRPORTS and origin != destination:
            first.append((origin, destination))
    first = list(dict.fromkeys(first))
    rest = [(o, d) for o in AIRPORTS for d in AIRPORTS if o != d and (o, d) not in first]
    random.Random(seed).shuffle(rest)
    return first + rest


class ZipfRoutes:
    """(origin, destination, day) pairs drawn with weight rank^-s, s = ZIPF_EXPONENT.

    Ranked by route (the popular routes first), a route's today before its tomorrow.
    """

    def __init__(self, popular: str, today: date, exponent: float = ZIPF_EXPONENT):
        days = [today + timedelta(days=i) for i in range(ROUTE_DAYS)]
        self.pairs = [(o, d, day) for o, d in route_ranking(popular) for day in days]
        weights = [(rank + 1) ** -exponent for rank in range(len(self.pairs))]
        self.cumulative = list(itertools.accumulate(weights))

    def draw(self, rng: random.Random) -> tuple[str, str, date]:
        return rng.choices(self.pairs, cum_weights=self.cumulative)[0]

    def mass_of_top(self, n: int) -> float:
        return self.cumulative[min(n, len(self.cumulative)) - 1] / self.cumulative[-1]
