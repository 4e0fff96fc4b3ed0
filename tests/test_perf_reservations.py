"""perf/bench_reservations.py's bookings, correctness check and verdicts, and
the report's goal row (no services, no timing)."""

from __future__ import annotations

from perf import bench_reservations
from perf.bench_reservations import (
    PIECES_CM,
    WEIGHTS_KG,
    booking_bodies,
    expected_space,
    space_problems,
)
from perf.goals import goal_rows

LEGS = [
    {"flight_id": "RG0001-20261201", "origin": "DEL", "destination": "BLR"},
    {"flight_id": "RG0002-20261201", "origin": "BOM", "destination": "DEL"},
]


def flight(fid, capacity_g, reservations, volumes=None):
    booked = sum(reservations.values())
    volumes = volumes if volumes is not None else {ref: 1000 for ref in reservations}
    return {
        "_id": fid,
        "capacity_g": capacity_g,
        "booked_g": booked,
        "available_g": capacity_g - booked,
        "capacity_cm3": 10**6,
        "booked_cm3": sum(volumes.values()),
        "available_cm3": 10**6 - sum(volumes.values()),
        "reservations": reservations,
        "volumes": volumes,
    }


def test_bookings_cycle_over_the_legs_and_the_weights():
    bodies = booking_bodies(LEGS, 7)
    assert [b["flight_ids"] for b in bodies[:3]] == [
        ["RG0001-20261201"],
        ["RG0002-20261201"],
        ["RG0001-20261201"],
    ]
    assert (bodies[1]["origin"], bodies[1]["destination"]) == ("BOM", "DEL")
    assert [b["weight_kg"] for b in bodies] == [*WEIGHTS_KG, *WEIGHTS_KG[:2]]
    assert all(b["pieces"] == 1 for b in bodies)
    sizes = [
        tuple(b["dimensions"][0][k] for k in ("length_cm", "width_cm", "height_cm")) for b in bodies
    ]
    assert sizes == [*PIECES_CM, *PIECES_CM[:2]]
    assert all(b["dimensions"][0]["count"] == 1 for b in bodies)


def test_expected_space_counts_only_the_bookings_that_succeeded():
    bodies = booking_bodies(LEGS, 4)  # 5 kg and 10 kg on the first leg, 7.5 and 12.5 on the other
    states = ["succeeded", "succeeded", "failed", "succeeded"]
    # 40 x 30 x 25 on the first leg; 50 x 40 x 30 and 60 x 50 x 30 on the other
    assert expected_space(bodies, states) == {
        "RG0001-20261201": {"booked_g": 5000, "booked_cm3": 30_000, "reservations": 1},
        "RG0002-20261201": {"booked_g": 20000, "booked_cm3": 150_000, "reservations": 2},
    }
    # A flight whose every booking failed must hold nothing.
    assert expected_space(bodies[:1], ["failed"]) == {
        "RG0001-20261201": {"booked_g": 0, "booked_cm3": 0, "reservations": 0}
    }


def test_space_problems_names_what_does_not_add_up():
    expected = {
        "A": {"booked_g": 5000, "booked_cm3": 1000, "reservations": 1},
        "B": {"booked_g": 0, "booked_cm3": 0, "reservations": 0},
    }
    good = [flight("A", 10_000, {"RG1": 5000}), flight("B", 10_000, {})]
    assert space_problems(expected, good) == []

    bulky = [flight("A", 10_000, {"RG1": 5000}, {"RG1": 2500}), flight("B", 10_000, {})]
    assert space_problems(expected, bulky) == ["A: booked 0.0025 m3, its bookings measure 0.001 m3"]
    leaky = [{**flight("A", 10_000, {"RG1": 5000}), "available_cm3": 10**6}]
    assert "A: available volume is not capacity - booked" in space_problems(expected, leaky)

    overbooked = [flight("A", 10_000, {"RG1": 5000, "RG2": 5000}), flight("B", 10_000, {})]
    problems = space_problems(expected, overbooked)
    assert any("booked 10 kg, its bookings weigh 5 kg" in p for p in problems)
    assert any("2 reservations" in p for p in problems)

    drifted = [{**flight("A", 10_000, {"RG1": 5000}), "available_g": 6000}]
    assert space_problems(expected, drifted) == [
        "B: not stored",
        "A: available is not capacity - booked",
    ]


def figures(hot_rate=200.0, spread_rate=300.0, spread_p95=1.5, ok=True, failed=0):
    def case(rate, flights, p95):
        return {
            "bookings": 2000,
            "flights": flights,
            "seconds": 10.0,
            "reservations_per_s": rate,
            "jobs": {"succeeded": 2000 - failed, "failed": failed, "errors": {}},
            "flight_lock": {
                "acquired": 2000,
                "failed": 0,
                "average_attempts": 1.0,
                "acquire_ms": {"p50": 0.3, "p95": p95, "max": 9.0},
            },
            "check": {
                "ok": ok,
                "booked_kg": 20000.0,
                "expected_kg": 20000.0,
                "booked_m3": 144.0,
                "expected_m3": 144.0,
                "problems": [],
            },
        }

    f = {
        "worker": "prefork x8",
        "hot": case(hot_rate, 1, 40.0),
        "spread": case(spread_rate, 1000, spread_p95),
    }
    f["ratio"] = bench_reservations.ratio(f["hot"], f["spread"])
    f["goals_met"] = bench_reservations.goals_met(f)
    return f


def test_verdicts_and_the_report():
    met = figures()
    assert met["ratio"] == round(200 / 300, 3)
    assert met["goals_met"] == {"ratio": True, "lock_p95": True, "correct": True}
    text = bench_reservations.report(met)
    assert "hot / spread        0.67   (goal >= 0.5: met)" in text
    assert "booked_kg check     ok" in text
    assert "booked_m3 check     144 m3 booked, bookings measure 144 m3" in text

    missed = figures(hot_rate=100.0, spread_p95=7.0, ok=False)
    assert missed["goals_met"] == {"ratio": False, "lock_p95": False, "correct": False}
    assert "FAILED" in bench_reservations.report(missed)
    assert figures(spread_rate=0.0)["ratio"] is None


def reservations_row(f):
    summary = {"benchmarks": {"reservations": {"figures": f}}}
    return next(r for r in goal_rows(summary) if r["name"].startswith("reservations"))


def test_goal_row():
    row = reservations_row(figures())
    assert row["vs_goal"] == "met"
    assert row["measured"].startswith("200 / 300/s = 0.67; flight lock p95 40 ms hot, 1.5 ms")
    assert row["ratio"] == 0.5 / 0.667

    row = reservations_row(figures(hot_rate=60.0, spread_p95=8.0, ok=False, failed=3))
    assert "missed by 0.30 (40% of it)" in row["vs_goal"]
    assert "missed by 3 ms" in row["vs_goal"]
    assert (
        "6 jobs failed" in row["vs_goal"]
    )  # 3 in each case and "does not add up" in row["vs_goal"]
    assert "DO NOT ADD UP" in row["measured"]
