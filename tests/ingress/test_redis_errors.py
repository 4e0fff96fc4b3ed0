"""A Redis that answers with an error (OOM here; MISCONF is the same ResponseError
family) only slows cached reads down: they answer from MongoDB, never a 500."""

from datetime import date

import pytest

from core import ids
from core.clock import utcnow
from core.services import connect_services
from core.settings import replace
from tests.conftest import CUSTOMER, IDS, booking_body, store_booking
from tests.core.test_cache import out_of_memory


@pytest.fixture
def app_on_private_redis(settings, services, private_redis):
    from ingress import create_app

    port, _, _ = private_redis
    patched = replace(settings, REDIS_URL=f"redis://127.0.0.1:{port}/0")
    svc = connect_services(patched)
    yield create_app(patched, services=svc), svc
    svc.close()


def cached_reads(ref_id: str) -> list[tuple[str, dict]]:
    day = date.today().isoformat()
    return [
        (f"/api/bookings/{ref_id}", CUSTOMER),
        ("/api/bookings/RG000000000", CUSTOMER),
        ("/api/bookings?limit=2", CUSTOMER),
        (f"/api/flights?origin=DEL&destination=BLR&date={day}", {}),
        ("/api/flights/RG0001-20310101", {}),
        (f"/api/routes?origin=DEL&destination=BLR&date={day}", {}),
    ]


def test_cached_reads_answer_while_redis_refuses_writes(app_on_private_redis, services):
    app, svc = app_on_private_redis
    ref_id = ids.new_ref_id()
    store_booking(
        services.db,
        ref_id=ref_id,
        data=booking_body(),
        job_id=ids.new_job_id(),
        now=utcnow(),
        customer_id=IDS["customer"],
    )
    c = app.test_client()
    first = [c.get(url, headers=headers).status_code for url, headers in cached_reads(ref_id)]
    assert first[:4] == [200, 404, 200, 200] and all(code < 500 for code in first)
    out_of_memory(svc.redis)
    # Cached values are still read; what is not cached is read from MongoDB and
    # not stored; every counter and metric is skipped.
    svc.redis.delete(f"booking:details:{ref_id}")  # DEL is allowed: a miss to refill
    again = [c.get(url, headers=headers).status_code for url, headers in cached_reads(ref_id)]
    assert again == first
    reverse = f"/api/routes?origin=BLR&destination=DEL&date={date.today().isoformat()}"
    assert c.get(reverse).status_code == 200  # never searched: a miss, computed, not stored
    assert svc.redis.exists("routes:BLR:DEL:" + date.today().isoformat()) == 0
    assert c.get(f"/api/bookings/{ref_id}", headers=CUSTOMER).get_json()["ref_id"] == ref_id
