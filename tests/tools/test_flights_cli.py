"""tools/flights.py: the demo schedule generator, seeding, and streamed file import.

Real services: the suite's SecantusDB (shared by every test, so each test
here uses its own dates or flight numbers) and Redis DB 15.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from inspect import isgenerator
from itertools import islice

import pytest
from click.testing import CliRunner

from core.flights import flight_id
from core.schemas.flights import FlightSchema
from tools.flights import (
    AIRPORTS,
    FLIGHTS_PER_ROUTE_PER_DAY,
    MAX_LINE_BYTES,
    cli,
    generate_schedule,
    great_circle_km,
    import_file,
    seed_flights,
)

DAY = len(AIRPORTS) * (len(AIRPORTS) - 1) * FLIGHTS_PER_ROUTE_PER_DAY
SEED_DATE = date(2033, 7, 14)  # a day no other test stores flights on
_schema = FlightSchema()


def fid(raw: dict) -> str:
    return flight_id(raw["flight_number"], datetime.fromisoformat(raw["departure_ts"]))


def run(obj, *args):
    """Invoke the CLI on the test services (or settings) instead of the environment's."""
    return CliRunner().invoke(cli, list(args), obj=obj, catch_exceptions=False)


# -- generator ----------------------------------------------------------------


def test_schedule_is_a_deterministic_lazy_generator():
    start = date(2025, 1, 20)
    schedule = generate_schedule(10**9, start, 42)
    assert isgenerator(schedule)
    assert len(list(islice(schedule, 5))) == 5  # a billion flights cost nothing until asked
    assert list(generate_schedule(3000, start, 42)) == list(generate_schedule(3000, start, 42))
    assert list(generate_schedule(300, start, 42)) != list(generate_schedule(300, start, 7))
    assert len(list(generate_schedule(1234, start, 42))) == 1234


@pytest.mark.slow(reason="validates a whole day's schedule")
def test_one_day_covers_every_route_ten_times_and_validates():
    start = date(2025, 1, 20)
    two_days = list(generate_schedule(2 * DAY + 1, start, 42))
    day1, day2, day3 = two_days[:DAY], two_days[DAY : 2 * DAY], two_days[2 * DAY :]
    assert len(AIRPORTS) >= 30
    assert {f["origin"] for f in day1} == {f["destination"] for f in day1} == set(AIRPORTS)
    assert {"DEL", "BOM", "BLR", "NYC", "LAX", "LHR", "DXB", "SIN", "SYD"} <= set(AIRPORTS)

    per_route = Counter((f["origin"], f["destination"]) for f in day1)
    assert len(per_route) == len(AIRPORTS) * (len(AIRPORTS) - 1)
    assert set(per_route.values()) == {FLIGHTS_PER_ROUTE_PER_DAY}

    midnight = datetime(2025, 1, 20, tzinfo=UTC)
    departures, crossing = [], 0
    for raw in day1:
        flight = _schema.load(raw)  # every generated flight is a valid import
        departure, arrival = flight["departure_ts"], flight["arrival_ts"]
        assert timedelta(0) < arrival - departure < timedelta(hours=24)
        assert (arrival - departure).total_seconds() % 300 == 0
        assert midnight <= departure < midnight + timedelta(days=1)  # its UTC day
        departures.append(departure)
        crossing += arrival.astimezone(UTC).date() > departure.astimezone(UTC).date()
    assert departures == sorted(departures)
    # Day boundaries get exercised: departures just after and just before 00:00 UTC.
    assert any(d - midnight < timedelta(minutes=30) for d in departures)
    assert any(midnight + timedelta(days=1) - d <= timedelta(minutes=30) for d in departures)
    assert crossing > 0
    # A spread over the day, not a bunch.
    assert len({d.astimezone(UTC).hour for d in departures}) == 24

    # One flight number per (route, daily slot), flown at the same time every day.
    assert len({f["flight_number"] for f in day1}) == DAY
    assert all(len(f["flight_number"]) == 6 for f in day1)

    def timetable(flights, days_later):
        return [
            (f["flight_number"], f["origin"], _departure(f) - timedelta(days=days_later))
            for f in flights
        ]

    assert timetable(day2, 1) == timetable(day1, 0)
    assert len({fid(f) for f in two_days}) == len(two_days)
    # The last day may be partial: its earliest departure.
    assert day3 == [
        day2[0]
        | {
            "departure_ts": _plus_day(day2[0]["departure_ts"]),
            "arrival_ts": _plus_day(day2[0]["arrival_ts"]),
        }
    ]


# The model generate_schedule documents: (kind, up to km, tonnes low, high).
CAPACITY_BANDS = (
    ("freighter", 3000, 40, 55),
    ("freighter", 7000, 50, 80),
    ("freighter", float("inf"), 90, 110),
    ("belly", 1500, 2, 5),
    ("belly", 4000, 4, 12),
    ("belly", float("inf"), 12, 25),
)


def band(raw: dict) -> tuple:
    """The flight's (kind, up to km, low t, high t) in CAPACITY_BANDS."""
    kind = "freighter" if raw["flight_number"][:2] in ("RC", "MF") else "belly"
    km = great_circle_km(AIRPORTS[raw["origin"]], AIRPORTS[raw["destination"]])
    return next(b for b in CAPACITY_BANDS if b[0] == kind and km <= b[1])


def test_capacities_follow_the_documented_model_deterministically():
    start = date(2025, 1, 20)
    two_days = list(generate_schedule(2 * DAY, start, 42))
    day1, day2 = two_days[:DAY], two_days[DAY:]
    by_band = defaultdict(list)
    for raw in day1:
        by_band[band(raw)].append(raw["capacity_kg"])
    assert set(by_band) == set(CAPACITY_BANDS)
    for (kind, up_to, low, high), values in by_band.items():
        assert all(low * 1000 <= kg <= high * 1000 and kg % 100 == 0 for kg in values)
        # spread over the band, not a few values
        quarter = (high - low) * 1000 / 4
        assert min(values) < low * 1000 + quarter < high * 1000 - quarter < max(values)
        assert len(set(values)) > 10, (kind, up_to)
    freighters = sum(len(v) for b, v in by_band.items() if b[0] == "freighter")
    assert 0.3 < freighters / DAY < 0.5  # the cargo carriers' share
    # One aircraft per flight number: the same capacity every day.
    assert [(f["flight_number"], f["capacity_kg"]) for f in day2] == [
        (f["flight_number"], f["capacity_kg"]) for f in day1
    ]
    assert two_days == list(generate_schedule(2 * DAY, start, 42))
    assert [f["capacity_kg"] for f in day1] != [
        f["capacity_kg"] for f in generate_schedule(DAY, start, 7)
    ]


def test_volumes_fill_belly_holds_first_and_freighters_about_together():
    """Belly holds: a payload density above the IATA standard (166.67 kg/m3), so
    cargo of that density fills their volume before their weight; freighters
    about the standard. The same aircraft, the same volume every day."""
    start = date(2025, 1, 20)
    two_days = list(generate_schedule(2 * DAY, start, 42))
    day1, day2 = two_days[:DAY], two_days[DAY:]
    densities = defaultdict(list)
    for raw in day1:
        densities[band(raw)[0]].append(raw["capacity_kg"] / raw["capacity_m3"])
        assert FlightSchema().load(raw)["capacity_m3"] == raw["capacity_m3"]
    # the bands, give or take the rounding to 0.1 m3 of a small hold
    assert 138 < min(densities["freighter"]) < 150 and 190 < max(densities["freighter"]) < 202
    assert 210 < min(densities["belly"]) < 230 and 310 < max(densities["belly"]) < 335
    assert min(densities["belly"]) > 1_000_000 / 6000  # above the standard density: volume first
    assert [f["capacity_m3"] for f in day2] == [f["capacity_m3"] for f in day1]


def _departure(raw: dict) -> datetime:
    return datetime.fromisoformat(raw["departure_ts"])


def _plus_day(iso: str) -> str:
    return (datetime.fromisoformat(iso) + timedelta(days=1)).isoformat()


# -- seed-flights -------------------------------------------------------------


def _count_on(db, day: date) -> int:
    """Flights departing on a UTC day, by indexed (origin, departure) ranges."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    window = {"$gte": start, "$lt": start + timedelta(days=1)}
    return sum(db.flights.count_documents({"origin": o, "departure_ts": window}) for o in AIRPORTS)


def _assert_stored(db, flights, sample=50):
    for raw in random.Random(1).sample(flights, sample):
        doc = db.flights.find_one({"_id": fid(raw)})
        assert doc is not None, raw
        expected = _schema.load(raw)
        assert doc["airline"] == raw["airline"]
        assert (doc["origin"], doc["destination"]) == (raw["origin"], raw["destination"])
        assert doc["departure_ts"] == expected["departure_ts"]
        assert doc["arrival_ts"] == expected["arrival_ts"]
        assert doc["capacity_g"] == doc["available_g"] == raw["capacity_kg"] * 1000


@pytest.mark.slow(reason="stores the demo schedule twice")
def test_seed_flights_stores_the_schedule_idempotently(services):
    flights = list(generate_schedule(2000, SEED_DATE, 42))
    for _ in range(2):  # a second run leaves the same data
        result = run(
            services, "seed-flights", "--count", "2000", "--start-date", f"{SEED_DATE:%Y-%m-%d}"
        )
        assert result.exit_code == 0, result.output
        assert "seeded 2000 flights (0 failed)" in result.output
        assert "flights/s" in result.output
        _assert_stored(services.db, flights)
        assert _count_on(services.db, SEED_DATE) == 2000


def test_seed_if_empty_seeds_an_empty_database_only(services):
    db = services.mongo["radiantgo_test_seed_if_empty"]
    services.mongo.drop_database(db.name)

    def seed_if_empty(seed):
        return seed_flights(
            db,
            services.locks,
            count=300,
            start_date=SEED_DATE,
            seed=seed,
            chunk_size=100,
            default_capacity_kg=services.settings.DEFAULT_FLIGHT_CAPACITY_KG,
            if_empty=True,
        )

    try:
        first = seed_if_empty(42)
        assert (first.skipped, first.imported, first.failed) == (False, 300, 0)
        again = seed_if_empty(7)
        assert again.skipped and again.existing == 300
        flights = list(generate_schedule(300, SEED_DATE, 42))
        _assert_stored(db, flights, sample=20)  # still seed 42's flights
    finally:
        services.mongo.drop_database(db.name)


def test_seed_if_empty_on_the_cli_skips_a_stocked_database(services, settings):
    run(services, "seed-flights", "--count", "1", "--start-date", f"{SEED_DATE:%Y-%m-%d}")
    # Given settings (not clients), the command connects on its own.
    result = run(settings, "seed-flights", "--count", "5", "--if-empty")
    assert result.exit_code == 0
    assert "nothing seeded" in result.output


# -- import-flights -----------------------------------------------------------


def flight(number: str, day: int, **changes) -> dict:
    raw = {
        "flight_number": number,
        "airline": "Test Air",
        "origin": "DEL",
        "destination": "BLR",
        "departure_ts": f"2034-02-{day:02d}T10:00:00+05:30",
        "arrival_ts": f"2034-02-{day:02d}T12:45:00+05:30",
    }
    raw.update(changes)
    return raw


def csv_line(raw: dict) -> str:
    return ",".join(
        raw[k]
        for k in ("flight_number", "airline", "origin", "destination", "departure_ts", "arrival_ts")
    )


def test_import_csv_reports_bad_lines_by_number(services, tmp_path):
    good = [flight("TC0001", 1), flight("TC0002", 1, airline="Acme, Inc."), flight("TC0003", 2)]
    late = flight("TC0004", 1, arrival_ts="2034-02-01T09:00:00+05:30")
    lines = [
        "flight_number,airline,origin,destination,departure_ts,arrival_ts",  # 1
        csv_line(good[0]),  # 2
        'TC0002,"Acme, Inc.",DEL,BLR,2034-02-01T10:00:00+05:30,2034-02-01T12:45:00+05:30',  # 3
        "",  # 4 (blank: skipped)
        "TC0009,Test Air,DEL,BLR",  # 5 wrong column count
        csv_line(late),  # 6 arrives before it departs
        csv_line(good[2]),  # 7
    ]
    path = tmp_path / "flights.csv"
    path.write_text("\n".join(lines) + "\n")

    result = run(services, "import-flights", str(path))
    assert result.exit_code == 0, result.output
    assert "imported 3, rejected 2" in result.output
    assert "line 5: expected 6 columns, found 4" in result.output
    assert "line 6: arrival_ts: Must be after departure_ts." in result.output
    for raw in good:
        doc = services.db.flights.find_one({"_id": fid(raw)})
        assert doc is not None and doc["airline"] == raw["airline"]
    assert services.db.flights.find_one({"_id": fid(late)}) is None


def test_import_csv_with_a_capacity_column(services, tmp_path):
    lines = [
        "capacity_kg,flight_number,airline,origin,destination,departure_ts,arrival_ts",
        "45000.5," + csv_line(flight("TK0001", 5)),  # 2
        "," + csv_line(flight("TK0002", 5)),  # 3: the default
        "1_000," + csv_line(flight("TK0003", 5)),  # 4: not a plain number
        "0," + csv_line(flight("TK0004", 5)),  # 5: not > 0
    ]
    path = tmp_path / "capacities.csv"
    path.write_text("\n".join(lines) + "\n")
    result = run(services, "import-flights", str(path))
    assert result.exit_code == 0, result.output
    assert "imported 2, rejected 2" in result.output
    assert "line 4: capacity_kg" in result.output and "line 5: capacity_kg" in result.output
    capacities = {
        number: services.db.flights.find_one({"_id": fid(flight(number, 5))})["capacity_g"]
        for number in ("TK0001", "TK0002")
    }
    default_g = round(services.settings.DEFAULT_FLIGHT_CAPACITY_KG * 1000)
    assert capacities == {"TK0001": 45_000_500, "TK0002": default_g}


def test_import_csv_with_a_volume_column(services, tmp_path):
    lines = [
        "flight_number,airline,origin,destination,departure_ts,arrival_ts,capacity_kg,capacity_m3",
        csv_line(flight("TV0001", 5)) + ",12000,75.25",  # 2
        csv_line(flight("TV0002", 5)) + ",12000,",  # 3: derived from the weight
        csv_line(flight("TV0003", 5)) + ",12000,1e5",  # 4: above any hold
        csv_line(flight("TV0004", 5)) + ",12000,lots",  # 5: not a number
    ]
    path = tmp_path / "volumes.csv"
    path.write_text("\n".join(lines) + "\n")
    result = run(services, "import-flights", str(path))
    assert result.exit_code == 0, result.output
    assert "imported 2, rejected 2" in result.output
    assert "line 4: capacity_m3" in result.output and "line 5: capacity_m3" in result.output
    stored = {
        number: services.db.flights.find_one({"_id": fid(flight(number, 5))})
        for number in ("TV0001", "TV0002")
    }
    assert {n: (d["capacity_cm3"], d["available_cm3"]) for n, d in stored.items()} == {
        "TV0001": (75_250_000, 75_250_000),
        "TV0002": (72_000_000, 72_000_000),  # 12,000 kg x 6,000 cm3 per kg
    }


def test_import_jsonl_reports_bad_lines_by_number(services, tmp_path):
    good = [flight("TJ0001", 3), flight("TJ0002", 3), flight("TJ0003", 4, origin="nyc")]
    lines = [
        json.dumps(good[0]),  # 1
        "{not json",  # 2
        json.dumps(flight("TJ0004", 3, destination="DEL")),  # 3 same as origin
        "",  # 4
        json.dumps(good[1]),  # 5
        json.dumps(flight("TJ0005", 3, airline="Bad \ud800 Air")),  # 6 lone surrogate
        json.dumps(good[2]),  # 7
        json.dumps(flight("TJ0006", 3, extra="x")),  # 8 unknown field
    ]
    path = tmp_path / "flights.ndjson"
    path.write_text("\n".join(lines))  # no final newline

    result = run(services, "import-flights", str(path))
    assert result.exit_code == 0, result.output
    assert "imported 3, rejected 4" in result.output
    assert "line 2: not valid JSON" in result.output
    assert "line 3: destination: Must differ from origin." in result.output
    assert "line 6: contains invalid Unicode" in result.output
    assert "line 8: extra: Unknown field." in result.output
    for raw in good:
        assert services.db.flights.find_one({"_id": fid(raw)}) is not None
    assert services.db.flights.find_one({"_id": "TJ0003-20340204"})["origin"] == "NYC"


def test_line_numbers_hold_across_chunks(services, tmp_path):
    """Small chunks: a rejection's line comes from its item index across many chunks."""
    rng = random.Random(3)
    lines, bad = [], set()
    for n in range(1, 201):
        raw = flight(f"TK{n:04d}", 5)
        if rng.random() < 0.15:
            lines.append("")
        if rng.random() < 0.2:
            lines.append("{broken")
            bad.add(len(lines))
        if rng.random() < 0.2:
            raw["origin"] = "D3L"
        lines.append(json.dumps(raw))
        if raw["origin"] == "D3L":
            bad.add(len(lines))
    path = tmp_path / "many.txt"  # format detected from the first character
    path.write_text("\n".join(lines) + "\n")

    result = import_file(
        services.db, services.locks, path, chunk_size=7, default_capacity_kg=20_000, keep=1000
    )
    assert result.format == "jsonl"
    assert [r.line for r in result.rejections] == sorted(bad)
    assert result.rejected == len(bad)
    assert result.imported == 200 - sum(1 for i in bad if lines[i - 1].startswith('{"'))
    first_20 = import_file(
        services.db, services.locks, path, chunk_size=7, default_capacity_kg=20_000
    ).rejections
    assert [r.line for r in first_20] == sorted(bad)[:20]


def test_import_all_bad_exits_1_and_empty_exits_0(services, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        "nope\n"
        + json.dumps(flight("TB0001", 6, origin="XX"))
        + "\n"
        + "x" * (MAX_LINE_BYTES + 10)
        + "\n"
    )
    result = run(services, "import-flights", str(bad))
    assert result.exit_code == 1, result.output
    assert "imported 0, rejected 3" in result.output
    assert "line 3: line longer than" in result.output

    empty = tmp_path / "empty.csv"
    empty.write_text("flight_number,airline,origin,destination,departure_ts,arrival_ts\n\n")
    result = run(services, "import-flights", str(empty))
    assert result.exit_code == 0, result.output
    assert "imported 0, rejected 0" in result.output


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "noheader.csv",
            "TX0001,Air,DEL,BLR,2034-02-07T10:00:00Z,2034-02-07T11:00:00Z\n",
            "header",
        ),
        ("array.json", '[{"flight_number": "TX0001"}]\n', "JSON Lines"),
    ],
)
def test_unreadable_files_fail_with_a_message(services, tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    result = run(services, "import-flights", str(path))
    assert result.exit_code == 1
    assert message in result.output
