"""core/migrations.py: the database's schema step, run before the app starts."""

import uuid

import pytest

from core import bookings, flights
from core.db import INDEXES
from core.migrations import migrate


@pytest.fixture
def fresh_db(services):
    """A database of its own on the test server, dropped afterwards."""
    name = f"migrate_{uuid.uuid4().hex[:8]}"
    yield services.mongo[name]
    services.mongo.drop_database(name)


def test_a_fresh_database_gets_every_index_and_each_migrations_mark(fresh_db, settings):
    assert migrate(fresh_db, settings) == {
        flights.CAPACITY_MIGRATION: 0,
        flights.VOLUME_MIGRATION: 0,
        bookings.LIST_KEYS_MIGRATION: 0,
    }
    for collection, models in INDEXES.items():
        present = set(fresh_db[collection].index_information())
        assert {m.document["name"] for m in models} <= present, collection
    marks = {doc["_id"] for doc in fresh_db.migrations.find()}
    assert marks == {
        flights.CAPACITY_MIGRATION,
        flights.VOLUME_MIGRATION,
        bookings.LIST_KEYS_MIGRATION,
    }


def test_old_flights_are_migrated_once_capacity_before_volume(fresh_db, settings):
    fresh_db.flights.insert_one({"_id": "RG1-2025-01-20", "origin": "DEL"})
    done = migrate(fresh_db, settings)
    assert done[flights.CAPACITY_MIGRATION] == 1 and done[flights.VOLUME_MIGRATION] == 1
    flight = fresh_db.flights.find_one()
    assert flight["capacity_g"] == settings.DEFAULT_FLIGHT_CAPACITY_KG * 1000
    assert flight["capacity_cm3"] > 0  # derived from the capacity just given
    assert set(migrate(fresh_db, settings).values()) == {0}  # idempotent
