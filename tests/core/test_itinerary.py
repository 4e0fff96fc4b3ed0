"""The flights a booking names chain its route, or the booking is refused."""

import pytest

from core import itinerary
from core.errors import Unprocessable
from tests.core.schedules import MIN_CONN, store_edge_schedule


@pytest.fixture(scope="module")
def edge_schedule(services):
    return store_edge_schedule(services)


def test_itinerary_checks(services, edge_schedule):
    def check(ids_, origin="QAA", destination="QBB"):
        return itinerary.check_itinerary(
            services.db,
            origin=origin,
            destination=destination,
            flight_ids=ids_,
            min_connection_minutes=MIN_CONN,
        )

    assert len(check(["QT1-20310310"])) == 1
    assert len(check(["QT10-20310310", "QT11-20310310"])) == 2
    for bad in (
        ["QT10-20310310", "QT12-20310310"],  # 59 min connection
        ["QT10-20310310", "QT14-20310312"],  # after the end of the next day
        ["QT10-20310310"],  # ends at QXX
        ["QT11-20310310", "QT10-20310310"],  # wrong order
        ["NOPE-20310310"],
    ):
        with pytest.raises(Unprocessable):
            check(bad)
