"""Schedules for the route tests: raw flights, the schedule of edge cases,
and the search at these tests' minimum connection."""

from datetime import UTC, date, datetime, timedelta

from core import routes
from tests.conftest import store_flights

MIN_CONN = 60
D = date(2031, 3, 10)  # far from any other test's flights


def at(day: date, hh: int, mm: int, plus_days: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=UTC) + timedelta(days=plus_days)


def raw(number, origin, destination, dep: datetime, minutes: int):
    return {
        "flight_number": number,
        "airline": "Test Air",
        "origin": origin,
        "destination": destination,
        "departure_ts": dep.isoformat(),
        "arrival_ts": (dep + timedelta(minutes=minutes)).isoformat(),
    }


def search(services, origin: str, destination: str, day: date, **options) -> dict:
    """routes.search_routes at these tests' minimum connection."""
    return routes.search_routes(
        services.db,
        origin=origin,
        destination=destination,
        day=day,
        min_connection_minutes=MIN_CONN,
        **options,
    )


def store_edge_schedule(services) -> list[dict]:
    """The edge cases of the search, on D from QAA to QBB; returns the raw flights."""
    A, B, X, Y = "QAA", "QBB", "QXX", "QYY"
    s = [
        raw("QT1", A, B, at(D, 8, 0), 120),  # direct
        raw("QT2", A, B, at(D, 23, 58), 120),  # direct near midnight
        raw("QT3", A, B, at(D, 0, 1, plus_days=1), 120),  # next day: not on D
        raw("QT4", A, B, at(D, 23, 59, plus_days=-1), 60),  # previous day: not on D
        raw("QT10", A, X, at(D, 6, 0), 60),  # arrives 07:00
        raw("QT11", X, B, at(D, 8, 0), 60),  # exactly 60 min: yes
        raw("QT12", X, B, at(D, 7, 59), 60),  # 59 min: no
        raw("QT13", X, B, at(D, 23, 59, plus_days=1), 60),  # 23:59 next day: yes
        raw("QT14", X, B, at(D, 0, 0, plus_days=2), 60),  # 00:00 the day after: no
        raw("QT20", A, Y, at(D, 22, 30), 90),  # arrives 00:00 next day
        raw("QT21", Y, B, at(D, 1, 0, plus_days=1), 45),  # 60 min after: yes
        raw("QT22", Y, B, at(D, 0, 30, plus_days=1), 45),  # 30 min: no
        raw("QT30", A, B, at(D, 12, 0), 30),  # B as X: first leg to B...
        raw("QT31", B, B.replace("B", "C"), at(D, 14, 0), 30),  # ...then onward: never a transit
        raw("QT32", A, A.replace("A", "D"), at(D, 9, 0), 30),  # QAD, then back to A: not via A
        raw("QT33", "QAD", A, at(D, 11, 0), 30),
        raw("QT34", A, X, at(D, 23, 50), 60),  # first leg late on D: pairs with QT13
        raw("QT40", A, X, at(D, 6, 0, plus_days=1), 60),  # first leg on D+1 only
        raw("QT41", X, B, at(D, 9, 0, plus_days=1), 60),
    ]
    result = store_flights(services, s, chunk_size=7)
    assert result["failed"] == 0 and result["succeeded"] == len(s)
    return s
