"""The database's schema step, run before any process that serves or works
starts (`make migrate`, `make run`, compose's `migrate` service), never as a
side effect of connecting: the ingress and the workers assume it ran.

Idempotent: indexes are created if missing (obsolete ones dropped), and each
data migration leaves a mark in the `migrations` collection, so a second run
does nothing but check.
"""

from __future__ import annotations

from pymongo.database import Database

from core import bookings, flights
from core.db import ensure_indexes
from core.settings import Settings


def migrate(db: Database, settings: Settings) -> dict[str, int]:
    """Bring `db` up to date; how many documents each data migration changed."""
    ensure_indexes(db)
    return {
        # Flights stored before flights had a capacity: the default, nothing booked.
        flights.CAPACITY_MIGRATION: flights.give_capacity(db, settings.DEFAULT_FLIGHT_CAPACITY_KG),
        # Then a volume, the one that weight fills at the standard density.
        flights.VOLUME_MIGRATION: flights.give_volume(db),
        # Bookings stored before the list keys the booking lists sort by.
        bookings.LIST_KEYS_MIGRATION: bookings.give_list_keys(db),
    }
