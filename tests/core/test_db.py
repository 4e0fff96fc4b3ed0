from pymongo import ASCENDING

from core.db import INDEXES, OBSOLETE_INDEXES, ensure_indexes


def test_obsolete_flight_indexes_are_dropped_and_the_declared_ones_kept(services):
    db = services.db
    db.flights.create_index([("flight_number", ASCENDING)])
    assert "flight_number_1" in db.flights.index_information()
    ensure_indexes(db)
    present = set(db.flights.index_information())
    assert not present.intersection(OBSOLETE_INDEXES["flights"])
    assert {"origin_1_departure_ts_1", "destination_1_departure_ts_1"} <= present
    assert len(present) == len(INDEXES["flights"]) + 1  # and _id_
