"""Flight data: a demo schedule generator and a streamed file import.

python -m tools.flights seed-flights --count 20000 [--start-date 2025-01-20] [--seed 42]
                                      [--if-empty]
python -m tools.flights import-flights flights.csv     # or .jsonl / .ndjson

Both load through `core.flights.import_flights`, so a flight is validated and
stored exactly as the API's bulk import does it, and running either twice
leaves the same data (a flight's `_id` is its number and UTC date).

The schedule is synthetic but plausible: every ordered pair of `AIRPORTS` is a
route flown 10 times a day, at local times between 05:00 and midnight, for the
great-circle distance at ~800 km/h plus 30 min of taxiing. Each (route, daily
slot) has its own flight number, flown at the same UTC time every day. Local
times use each airport's standard UTC offset (no daylight saving), and the
timestamps carry that offset (`2025-01-20T06:15:00+05:30`): importers must read
offsets, and India's early departures land just before or after midnight UTC,
so day boundaries get exercised. Each flight has a cargo capacity for its
kind of aircraft and its route's length (see `generate_schedule`).
"""

from __future__ import annotations

import csv
import json
import math
import random
import re
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import click
from pymongo.database import Database
from pymongo.errors import PyMongoError, ServerSelectionTimeoutError
from tqdm import tqdm

from core.db import ensure_indexes
from core.flights import import_flights
from core.locks import LockManager
from core.schemas.flights import MAX_FLIGHT_DURATION_H
from core.services import Services, connect_services
from core.settings import Settings, SettingsError, load_settings

# -- the schedule -------------------------------------------------------------


class Airport(NamedTuple):
    city: str
    lat: float
    lon: float
    utc_offset_min: int  # standard time; the schedule ignores daylight saving


# NYC is the city code (all New York airports), as the spec uses it; JFK is one
# of them, so NYC<->JFK is a (short) route like any other pair.
AIRPORTS: dict[str, Airport] = {
    "DEL": Airport("Delhi", 28.5562, 77.1000, 330),
    "BOM": Airport("Mumbai", 19.0896, 72.8656, 330),
    "BLR": Airport("Bengaluru", 13.1986, 77.7066, 330),
    "MAA": Airport("Chennai", 12.9941, 80.1709, 330),
    "HYD": Airport("Hyderabad", 17.2403, 78.4294, 330),
    "CCU": Airport("Kolkata", 22.6547, 88.4467, 330),
    "AMD": Airport("Ahmedabad", 23.0772, 72.6347, 330),
    "COK": Airport("Kochi", 10.1520, 76.4019, 330),
    "GOI": Airport("Goa", 15.3808, 73.8314, 330),
    "PNQ": Airport("Pune", 18.5821, 73.9197, 330),
    "NYC": Airport("New York", 40.7128, -74.0060, -300),
    "JFK": Airport("New York JFK", 40.6413, -73.7781, -300),
    "LAX": Airport("Los Angeles", 33.9416, -118.4085, -480),
    "SFO": Airport("San Francisco", 37.6213, -122.3790, -480),
    "ORD": Airport("Chicago", 41.9742, -87.9073, -360),
    "ATL": Airport("Atlanta", 33.6407, -84.4277, -300),
    "YYZ": Airport("Toronto", 43.6777, -79.6248, -300),
    "LHR": Airport("London", 51.4700, -0.4543, 0),
    "CDG": Airport("Paris", 49.0097, 2.5479, 60),
    "FRA": Airport("Frankfurt", 50.0379, 8.5622, 60),
    "AMS": Airport("Amsterdam", 52.3105, 4.7683, 60),
    "IST": Airport("Istanbul", 41.2753, 28.7519, 180),
    "DOH": Airport("Doha", 25.2731, 51.6081, 180),
    "DXB": Airport("Dubai", 25.2532, 55.3657, 240),
    "BKK": Airport("Bangkok", 13.6900, 100.7501, 420),
    "SIN": Airport("Singapore", 1.3644, 103.9915, 480),
    "HKG": Airport("Hong Kong", 22.3080, 113.9185, 480),
    "ICN": Airport("Seoul", 37.4602, 126.4407, 540),
    "NRT": Airport("Tokyo", 35.7720, 140.3929, 540),
    "SYD": Airport("Sydney", -33.9399, 151.1753, 600),
}

# (designator, name): fictional carriers; each flight number belongs to one.
AIRLINES: tuple[tuple[str, str], ...] = (
    ("RG", "RadiantGo Airlines"),
    ("RC", "RadiantGo Cargo"),
    ("SW", "Skyward Air"),
    ("MF", "Monsoon Freight"),
    ("BL", "Blue Lotus Airways"),
)

FLIGHTS_PER_ROUTE_PER_DAY = 10
FIRST_LOCAL_DEPARTURE_MIN = 5 * 60  # 05:00 local
LAST_LOCAL_DEPARTURE_MIN = 24 * 60  # slots end at midnight local
CRUISE_KMH = 800
TAXI_MIN = 30
EARTH_RADIUS_KM = 6371.0


def great_circle_km(a: Airport, b: Airport) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (a.lat, a.lon, b.lat, b.lon))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def block_minutes(origin: str, destination: str) -> int:
    """Gate to gate: distance at cruise speed plus taxiing, rounded to 5 min."""
    airborne = great_circle_km(AIRPORTS[origin], AIRPORTS[destination]) / CRUISE_KMH * 60
    minutes = max(5, 5 * round((airborne + TAXI_MIN) / 5))
    if minutes >= MAX_FLIGHT_DURATION_H * 60:  # not with these airports; guards edits
        raise ValueError(f"{origin}-{destination} would last {minutes} min")
    return minutes


# Cargo capacity: the cargo carriers fly freighters, the others passenger
# aircraft whose belly holds take cargo beside the bags. Bigger aircraft fly
# longer routes, so payloads (tonnes, low to high) go by great-circle distance.
CARGO_AIRLINES = frozenset({"RC", "MF"})  # RadiantGo Cargo, Monsoon Freight
FREIGHTER_TONNES = (  # (up to km, (low, high))
    (3000, (40, 55)),  # B757-200F, B767-300F on regional hops
    (7000, (50, 80)),  # B767-300F, A330-200F
    (math.inf, (90, 110)),  # B777F, B747-400F
)
BELLY_TONNES = (
    (1500, (2, 5)),  # A320 / B737 family
    (4000, (4, 12)),  # A321, and widebodies on medium routes
    (math.inf, (12, 25)),  # B787, A350, B777
)


def cargo_capacity_kg(rng: random.Random, designator: str, km: float) -> int:
    """One aircraft's cargo payload on a route of `km`, to the nearest 100 kg,
    drawn uniformly within its band."""
    bands = FREIGHTER_TONNES if designator in CARGO_AIRLINES else BELLY_TONNES
    low, high = next(tonnes for up_to, tonnes in bands if km <= up_to)
    return 100 * round(rng.uniform(low, high) * 10)


# Cargo volume, as the payload's density (kg per m3 of space). A freighter's
# holds take about the IATA standard density (166.67): a B777F lifts ~102 t in
# ~650 m3, a B767-300F ~52 t in ~440 m3, a B757-200F ~39 t in ~190 m3. A belly
# hold has far less room for its payload once the bags are in (an A320's
# ~3 t of cargo in ~10-15 m3), so typical cargo fills it by volume first.
FREIGHTER_KG_PER_M3 = (140, 200)
BELLY_KG_PER_M3 = (220, 320)


def cargo_volume_m3(rng: random.Random, designator: str, capacity_kg: int) -> float:
    """The volume of an aircraft's cargo space, from its payload and a density
    drawn uniformly within its kind's band, to the nearest 0.1 m3."""
    low, high = FREIGHTER_KG_PER_M3 if designator in CARGO_AIRLINES else BELLY_KG_PER_M3
    return round(capacity_kg / rng.uniform(low, high), 1)


class Slot(NamedTuple):
    """One daily flight: flown every day at the same UTC time, by the same aircraft."""

    departure_min: int  # minutes after 00:00 UTC
    flight_number: str
    airline: str
    origin: str
    destination: str
    duration_min: int
    capacity_kg: int
    capacity_m3: float


@lru_cache(maxsize=4)
def daily_timetable(seed: int) -> tuple[Slot, ...]:
    """The day's flights for a seed, in departure order (UTC, then number).

    Routes and slots are drawn in a fixed order from one random.Random(seed),
    so a seed always gives the same timetable. ~8,700 small tuples. Capacities
    and volumes are drawn from streams of their own: a seed's numbers, times
    and capacities are the same as before flights had them.
    """
    rng = random.Random(seed)
    space = random.Random(f"capacity:{seed}")  # str seeds hash the same in every process
    room = random.Random(f"volume:{seed}")
    codes = sorted(AIRPORTS)
    next_number = dict.fromkeys((code for code, _ in AIRLINES), 1)
    # The day's window in 5-minute steps, cut into one slot per daily flight.
    steps = (LAST_LOCAL_DEPARTURE_MIN - FIRST_LOCAL_DEPARTURE_MIN) // 5
    per_slot = steps // FLIGHTS_PER_ROUTE_PER_DAY
    slots = []
    for origin in codes:
        offset = AIRPORTS[origin].utc_offset_min
        for destination in codes:
            if destination == origin:
                continue
            duration = block_minutes(origin, destination)
            km = great_circle_km(AIRPORTS[origin], AIRPORTS[destination])
            for index in range(FLIGHTS_PER_ROUTE_PER_DAY):
                step = index * steps // FLIGHTS_PER_ROUTE_PER_DAY + rng.randrange(per_slot)
                local = FIRST_LOCAL_DEPARTURE_MIN + 5 * step
                designator, airline = AIRLINES[rng.randrange(len(AIRLINES))]
                number = f"{designator}{next_number[designator]:04d}"
                next_number[designator] += 1
                capacity = cargo_capacity_kg(space, designator, km)
                volume = cargo_volume_m3(room, designator, capacity)
                slots.append(
                    Slot(
                        (local - offset) % 1440,
                        number,
                        airline,
                        origin,
                        destination,
                        duration,
                        capacity,
                        volume,
                    )
                )
    if max(next_number.values()) > 10_000:
        raise ValueError("flight numbers would exceed 4 digits")
    slots.sort()
    return tuple(slots)


@lru_cache(maxsize=64)
def _zone(offset_min: int) -> timezone:
    return timezone(timedelta(minutes=offset_min))


def generate_schedule(count: int, start_date: date, seed: int = 42) -> Iterator[dict[str, Any]]:
    """`count` raw flights (import format), day after day from `start_date`.

    A generator: flights are built one at a time. Same arguments, same flights.
    Each day holds the whole timetable in departure order; the last day may be
    partial (its earliest departures). Every flight departs on its day in UTC.

    Each flight has a `capacity_kg`: the same every day for a flight number
    (one aircraft), drawn from the seed, uniform within the band for its kind
    and its route's great-circle distance, to the nearest 100 kg:

        kind (carriers, share of flights)       distance          capacity
        freighter (RC, MF: about 2 in 5)        up to 3,000 km    40-55 t
                                                up to 7,000 km    50-80 t
                                                beyond            90-110 t
        belly hold (RG, SW, BL: about 3 in 5)   up to 1,500 km    2-5 t
                                                up to 4,000 km    4-12 t
                                                beyond            12-25 t

    and a `capacity_m3`, from that payload and a density drawn for the kind:
    a freighter 140-200 kg per m3 (about the IATA standard, 166.67: weight and
    volume run out together), a belly hold 220-320 kg per m3 (volume runs out
    first for cargo of the standard density, as it does on passenger flights).
    """
    timetable = daily_timetable(seed)
    produced = 0
    day = datetime(start_date.year, start_date.month, start_date.day, tzinfo=UTC)
    while produced < count:
        for slot in timetable:
            if produced >= count:
                return
            departure = day + timedelta(minutes=slot.departure_min)
            arrival = departure + timedelta(minutes=slot.duration_min)
            yield {
                "flight_number": slot.flight_number,
                "airline": slot.airline,
                "origin": slot.origin,
                "destination": slot.destination,
                "departure_ts": departure.astimezone(
                    _zone(AIRPORTS[slot.origin].utc_offset_min)
                ).isoformat(),
                "arrival_ts": arrival.astimezone(
                    _zone(AIRPORTS[slot.destination].utc_offset_min)
                ).isoformat(),
                "capacity_kg": slot.capacity_kg,
                "capacity_m3": slot.capacity_m3,
            }
            produced += 1
        day += timedelta(days=1)


Progress = Callable[[dict[str, int]], None]


@dataclass
class SeedResult:
    skipped: bool
    imported: int = 0
    failed: int = 0
    seconds: float = 0.0
    existing: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


def seed_flights(
    db: Database,
    locks: LockManager,
    *,
    count: int,
    start_date: date,
    seed: int,
    chunk_size: int,
    default_capacity_kg: float,
    if_empty: bool = False,
    on_progress: Progress | None = None,
) -> SeedResult:
    """Store the generated schedule in `db` (nothing if `if_empty` and flights exist)."""
    if if_empty:
        existing = db.flights.estimated_document_count()
        if existing > 0:
            return SeedResult(skipped=True, existing=existing)
    started = time.perf_counter()
    result = import_flights(
        db,
        locks,
        generate_schedule(count, start_date, seed),
        chunk_size=chunk_size,
        default_capacity_kg=default_capacity_kg,
        total=count,
        on_progress=on_progress,
    )
    return SeedResult(
        skipped=False,
        imported=result["succeeded"],
        failed=result["failed"],
        seconds=time.perf_counter() - started,
        errors=result["errors"],
    )


# -- file import --------------------------------------------------------------

FIELDS = ("flight_number", "airline", "origin", "destination", "departure_ts", "arrival_ts")
# A CSV may add these columns; an empty cell: the default (capacity_m3: derived).
OPTIONAL_FIELDS = ("capacity_kg", "capacity_m3")
MAX_LINE_BYTES = 64 * 1024  # a flight is ~200 bytes; longer lines are rejected unread


class FileFormatError(ValueError):
    """The file as a whole cannot be read (bad CSV header, a JSON array)."""


class Rejection(NamedTuple):
    line: int
    reason: str


@dataclass
class FileImportResult:
    format: str
    lines: int = 0  # lines read, header and blank ones included
    imported: int = 0
    rejected: int = 0
    rejections: list[Rejection] = field(default_factory=list)  # the first `keep`, by line
    seconds: float = 0.0

    @property
    def all_rejected(self) -> bool:
        return self.rejected > 0 and self.imported == 0


def detect_format(path: Path) -> str:
    """'csv' or 'jsonl', from the extension, else from the first non-blank character."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    with path.open("rb") as fh:
        for raw in iter(lambda: fh.read(4096), b""):
            text = raw.lstrip(b" \t\r\n\xef\xbb\xbf")  # whitespace and a UTF-8 BOM
            if text:
                if text[:1] == b"[":
                    raise FileFormatError(
                        "a JSON array is not supported: give one JSON object per line (JSON Lines)"
                    )
                return "jsonl" if text[:1] == b"{" else "csv"
    return "jsonl"  # empty: either reads as nothing


def count_lines(path: Path) -> int:
    """Lines in the file, counted in 1 MiB blocks (for the progress bar's total)."""
    lines = 0
    last = b"\n"
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


def _physical_lines(fh: BinaryIO) -> Iterator[bytes | None]:
    """Each line's bytes without the line ending; None for a line over MAX_LINE_BYTES."""
    while raw := fh.readline(MAX_LINE_BYTES + 1):
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while (rest := fh.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass
            yield None
            continue
        yield raw.rstrip(b"\r\n")


def _has_surrogates(value: Any) -> bool:
    """A lone surrogate (JSON "\\ud800") is no text MongoDB can store."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_surrogates(k) or _has_surrogates(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogates(v) for v in value)
    return False


class _Reader:
    """Streams a file's flights; remembers which line each one came from.

    Memory stays bounded by the rejections kept, not the file: the line of the
    n-th flight is n + 1 + (lines skipped before it), and the skips are kept
    only where they change (a run of good lines costs nothing).
    """

    def __init__(self, fh: BinaryIO, fmt: str, keep: int) -> None:
        self.fh = fh
        self.fmt = fmt
        self.keep = keep
        self.line = 0  # last line read
        self.items = 0  # flights yielded
        self.skipped = 0  # header, blank and malformed lines so far
        self.rejected = 0
        self.rejections: list[Rejection] = []
        self._skip_at: list[int] = []  # item index from which ...
        self._skip_count: list[int] = []  # ... this many lines had been skipped
        self._columns: list[str] | None = None

    def line_of(self, index: int) -> int:
        at = bisect_right(self._skip_at, index) - 1
        return index + 1 + (self._skip_count[at] if at >= 0 else 0)

    def reject(self, line: int, reason: str) -> None:
        self.rejected += 1
        if len(self.rejections) < self.keep:
            self.rejections.append(Rejection(line, reason))

    def _skip(self) -> None:
        self.skipped += 1
        if self._skip_at and self._skip_at[-1] == self.items:
            self._skip_count[-1] = self.skipped
        else:
            self._skip_at.append(self.items)
            self._skip_count.append(self.skipped)

    def __iter__(self) -> Iterator[Any]:
        for raw in _physical_lines(self.fh):
            self.line += 1
            try:
                item = self._parse(raw)
            except ValueError as exc:
                self._skip()
                self.reject(self.line, str(exc))
                continue
            if item is None:  # header or blank line
                self._skip()
                continue
            self.items += 1
            yield item

    def _parse(self, raw: bytes | None) -> Any:
        if raw is None:
            raise ValueError(f"line longer than {MAX_LINE_BYTES} bytes")
        try:
            text = raw.decode("utf-8-sig" if self.line == 1 else "utf-8")
        except UnicodeDecodeError:
            raise ValueError("not valid UTF-8") from None
        if not text.strip():
            return None
        if self.fmt == "jsonl":
            try:
                item = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
            except (ValueError, RecursionError):  # nested too deep, a huge number
                raise ValueError("not valid JSON") from None
        else:
            try:
                row = next(csv.reader([text], strict=True))
            except csv.Error as exc:
                raise ValueError(f"not valid CSV ({exc})") from None
            if self._columns is None:
                self._columns = self._header(row)
                return None
            if len(row) != len(self._columns):
                raise ValueError(f"expected {len(self._columns)} columns, found {len(row)}")
            item = dict(zip(self._columns, row, strict=True))
            for name in OPTIONAL_FIELDS:
                if name in item:
                    item[name] = _csv_number(item[name])
                    if item[name] is None:
                        del item[name]
        if _has_surrogates(item):
            raise ValueError("contains invalid Unicode (a lone surrogate)")
        return item

    def _header(self, row: list[str]) -> list[str]:
        columns = [name.strip().lower() for name in row]
        required = [name for name in columns if name not in OPTIONAL_FIELDS]
        if sorted(required) != sorted(FIELDS) or len(set(columns)) != len(columns):
            raise FileFormatError(
                f"line {self.line}: the CSV header must name the columns "
                f"{', '.join(FIELDS)} (any order, and optionally"
                f" {', '.join(OPTIONAL_FIELDS)}); found {', '.join(row) or 'nothing'}"
            )
        return columns


_JSON_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")


def _csv_number(text: str) -> float | str | None:
    """A CSV cell read as a JSON number would be (None if empty); any other
    text is left as it is, for the schema to refuse."""
    text = text.strip()
    if not text:
        return None
    return float(text) if _JSON_NUMBER.fullmatch(text) else text


def _problem_reason(problem: dict[str, Any]) -> str:
    errors = problem.get("errors") or {}
    parts = []
    for name, messages in errors.items():
        text = "; ".join(map(str, messages)) if isinstance(messages, list) else str(messages)
        parts.append(text if name == "_schema" else f"{name}: {text}")
    return "; ".join(parts) or problem.get("detail", "invalid flight")


def import_file(
    db: Database,
    locks: LockManager,
    path: Path,
    *,
    chunk_size: int,
    default_capacity_kg: float,
    keep: int = 20,
    on_progress: Callable[[_Reader, dict[str, int]], None] | None = None,
) -> FileImportResult:
    """Stream a CSV or JSON Lines file of flights into `db`, line by line.

    Malformed lines and invalid flights are rejected with their 1-based line
    number; the rest are stored. `keep` bounds the rejections listed (the
    earliest lines), not the count. Raises FileFormatError for an unreadable file.
    """
    path = Path(path)
    fmt = detect_format(path)
    started = time.perf_counter()
    with path.open("rb") as fh:
        reader = _Reader(fh, fmt, keep)
        result = import_flights(
            db,
            locks,
            iter(reader),
            chunk_size=chunk_size,
            default_capacity_kg=default_capacity_kg,
            on_progress=(lambda p: on_progress(reader, p)) if on_progress else None,
        )
    # import_flights lists errors in item order, so in line order: the first
    # `keep` of them and of the malformed lines hold the file's first `keep`.
    invalid = [
        Rejection(reader.line_of(error["index"]), _problem_reason(error["problem"]))
        for error in result["errors"][:keep]
    ]
    return FileImportResult(
        format=fmt,
        lines=reader.line,
        imported=result["succeeded"],
        rejected=reader.rejected + result["failed"],
        rejections=sorted(reader.rejections + invalid)[:keep],
        seconds=time.perf_counter() - started,
    )


# -- command line -------------------------------------------------------------


@contextmanager
def _services(ctx: click.Context) -> Iterator[Services]:
    """The Services in ctx.obj (tests), else clients for ctx.obj's or the env's settings."""
    obj = ctx.find_root().obj
    if isinstance(obj, Services):
        yield obj
        return
    if isinstance(obj, Settings):
        settings = obj
    else:
        try:
            settings = load_settings()
        except SettingsError as exc:
            raise click.ClickException(f"bad setting: {exc}") from None
    svc = connect_services(settings)
    try:
        yield svc
    finally:
        svc.close()


def _prepare(svc: Services) -> None:
    try:
        ensure_indexes(svc.db)
    except ServerSelectionTimeoutError:
        nodes = ", ".join(
            f"{host}:{port}" for host, port in svc.mongo.topology_description.server_descriptions()
        )
        raise click.ClickException(
            f"MongoDB does not answer at {nodes} (MONGODB_URI); is it running?"
        ) from None
    except PyMongoError as exc:
        raise click.ClickException(f"MongoDB is not usable: {exc}") from None


@click.group()
def cli() -> None:
    """RadiantGo flight data: seed a demo schedule, import flight files."""


@cli.command("seed-flights")
@click.option(
    "--count",
    type=click.IntRange(min=0),
    default=None,
    help="Flights to generate [default: the DEMO_FLIGHTS setting].",
)
@click.option(
    "--start-date",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="First day (UTC), YYYY-MM-DD [default: today UTC].",
)
@click.option("--seed", type=int, default=42, show_default=True, help="Random seed.")
@click.option("--if-empty", is_flag=True, help="Do nothing if any flight is stored already.")
@click.pass_context
def seed_flights_command(
    ctx: click.Context,
    count: int | None,
    start_date: datetime | None,
    seed: int,
    if_empty: bool,
) -> None:
    """Generate a deterministic daily schedule and store it (idempotent)."""
    first_day = start_date.date() if start_date else datetime.now(UTC).date()
    with _services(ctx) as svc:
        _prepare(svc)
        count = svc.settings.DEMO_FLIGHTS if count is None else count
        with tqdm(total=count, unit="flights", desc="seeding", disable=None) as bar:

            def progress(p: dict[str, int]) -> None:
                bar.update(p["done"] - bar.n)

            try:
                result = seed_flights(
                    svc.db,
                    svc.locks,
                    count=count,
                    start_date=first_day,
                    seed=seed,
                    chunk_size=svc.settings.BULK_CHUNK_SIZE,
                    default_capacity_kg=svc.settings.DEFAULT_FLIGHT_CAPACITY_KG,
                    if_empty=if_empty,
                    on_progress=progress,
                )
            except PyMongoError as exc:
                raise click.ClickException(f"MongoDB failed: {exc}") from None
    if result.skipped:
        click.echo(f"flights: {result.existing} stored already; nothing seeded (--if-empty)")
        return
    rate = result.imported / result.seconds if result.seconds else 0.0
    days = -(-count // len(daily_timetable(seed))) if count else 0
    click.echo(
        f"seeded {result.imported} flights ({result.failed} failed) over {days} day(s) from "
        f"{first_day:%Y-%m-%d}, seed {seed}, in {result.seconds:.1f} s ({rate:,.0f} flights/s)"
    )
    for error in result.errors[:5]:  # the generator's own flights never fail; if they do, say why
        click.echo(f"  flight #{error['index'] + 1}: {_problem_reason(error['problem'])}", err=True)


@cli.command("import-flights")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
@click.pass_context
def import_flights_command(ctx: click.Context, file: Path) -> None:
    """Import flights from a CSV (with a header row) or JSON Lines FILE, streamed.

    Bad lines are reported with their line number and skipped. Exit code 1
    when every line was rejected.
    """
    with _services(ctx) as svc:
        _prepare(svc)
        with tqdm(total=count_lines(file), unit="flights", desc="importing", disable=None) as bar:

            def progress(reader: _Reader, p: dict[str, int]) -> None:
                bar.update(reader.line - bar.n)
                bar.set_postfix(
                    flights=p["done"] - p["failed"], rejected=reader.rejected + p["failed"]
                )

            try:
                result = import_file(
                    svc.db,
                    svc.locks,
                    file,
                    chunk_size=svc.settings.BULK_CHUNK_SIZE,
                    default_capacity_kg=svc.settings.DEFAULT_FLIGHT_CAPACITY_KG,
                    on_progress=progress,
                )
            except FileFormatError as exc:
                raise click.ClickException(f"{file}: {exc}") from None
            except PyMongoError as exc:
                raise click.ClickException(f"MongoDB failed: {exc}") from None
            bar.update(result.lines - bar.n)
    rate = result.imported / result.seconds if result.seconds else 0.0
    click.echo(
        f"{file} ({result.format}): imported {result.imported}, rejected {result.rejected} "
        f"of {result.lines} lines in {result.seconds:.1f} s ({rate:,.0f} flights/s)"
    )
    for rejection in result.rejections:
        click.echo(f"  line {rejection.line}: {rejection.reason}")
    if result.rejected > len(result.rejections):
        click.echo(f"  ... and {result.rejected - len(result.rejections)} more rejected lines")
    if result.all_rejected:
        ctx.exit(1)


if __name__ == "__main__":
    cli()
