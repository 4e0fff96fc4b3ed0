"""Air waybill numbers where the worker stores bookings (core.group_commit,
core.bulk): a client's AWB that another booking took past the door is refused
with its 409, before it takes cargo space or, past that too, giving it back;
a redelivery is never refused by its own booking; each bulk item gets one."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

from core import awb, bulk, flights, group_commit, reservations
from core.clock import utcnow
from core.errors import AwbTaken
from core.ids import new_job_id, new_ref_id
from tests.conftest import store_booking

_numbers = itertools.count(1)
ORIGIN, DESTINATION = "QWA", "QWB"


def new_flight(services, capacity_kg=1000) -> str:
    departure = datetime(2034, 5, 1, 8, tzinfo=UTC)
    doc = flights.flight_document(
        {
            "flight_number": f"QW{next(_numbers):03d}",
            "airline": "Waybill Air",
            "origin": ORIGIN,
            "destination": DESTINATION,
            "departure_ts": departure,
            "arrival_ts": departure + timedelta(hours=2),
            "capacity_kg": capacity_kg,
        },
        services.settings.DEFAULT_FLIGHT_CAPACITY_KG,
    )
    services.db.flights.delete_one({"_id": doc["_id"]})
    services.db.flights.insert_one(doc)
    return doc["_id"]


def booked_kg(services, fid) -> float:
    return flights.get_flight(services.db, fid)["booked_kg"]


def client_awb() -> str:
    return awb.awb_number("176", uuid.uuid4().int % (awb.SERIALS - 1) + 1)


def request(**fields):
    return {"origin": ORIGIN, "destination": DESTINATION, "pieces": 1, "weight_kg": 100.0, **fields}


def create_item(number: str, **fields):
    """A queued create bringing its own AWB, as the worker hands it to create_bookings."""
    return {
        "job_id": new_job_id(),
        "ref_id": new_ref_id(),
        "awb": number,
        "request": request(awb=number, **fields),
        "customer_id": None,
    }


def create_bookings(services, items):
    return group_commit.create_bookings(
        services.db, services.locks, items, now=utcnow(), min_connection_minutes=60
    )


def stored_elsewhere(services, number: str) -> str:
    """Another booking holding `number`, stored past the door's check."""
    ref_id = new_ref_id()
    store_booking(services.db, ref_id, request(), job_id=new_job_id(), now=utcnow(), awb=number)
    return ref_id


def test_a_redelivered_create_is_not_refused_by_its_own_booking(services):
    fid = new_flight(services)
    item = create_item(client_awb(), flight_ids=[fid])
    first, again = (create_bookings(services, [item])[0] for _ in range(2))
    assert first["awb"] == again["awb"] == item["awb"]
    assert services.db.bookings.count_documents({"awb": item["awb"]}) == 1
    assert booked_kg(services, fid) == 100


def test_an_awb_stored_past_the_door_refuses_the_create_before_it_takes_space(services):
    fid = new_flight(services)
    number = client_awb()
    stored_elsewhere(services, number)
    [refused] = create_bookings(services, [create_item(number, flight_ids=[fid])])
    assert isinstance(refused, AwbTaken) and refused.status == 409
    assert refused.to_problem()["awb"] == number
    assert booked_kg(services, fid) == 0


def test_two_creates_of_one_awb_in_a_group_store_one(services):
    fid = new_flight(services)
    number = client_awb()
    items = [create_item(number, flight_ids=[fid]) for _ in range(2)]  # two jobs
    first, second = create_bookings(services, items)
    assert first["awb"] == number and isinstance(second, AwbTaken)
    assert booked_kg(services, fid) == 100
    assert reservations.flight_reservations(services.db, fid) == {first["ref_id"]: 100_000}


def test_the_unique_index_decides_a_race_past_every_check_and_the_space_goes_back(
    services, monkeypatch
):
    """Another create stores the AWB while this one takes its space: its insert
    is refused by the index, and what it took goes back."""
    fid = new_flight(services)
    number = client_awb()
    reserve_many = reservations.reserve_many

    def reserve_then_lose_the_race(*args, **kwargs):
        taken = reserve_many(*args, **kwargs)
        stored_elsewhere(services, number)
        return taken

    monkeypatch.setattr(reservations, "reserve_many", reserve_then_lose_the_race)
    cube = {"count": 1, "length_cm": 100, "width_cm": 100, "height_cm": 100}
    [refused] = create_bookings(
        services, [create_item(number, flight_ids=[fid], dimensions=[cube])]
    )
    assert isinstance(refused, AwbTaken)
    assert booked_kg(services, fid) == 0
    assert flights.get_flight(services.db, fid)["booked_m3"] == 0  # its volume too
    assert reservations.flight_reservations(services.db, fid) == {}


def test_space_a_dead_delivery_took_goes_back_when_its_awb_is_taken_meanwhile(services):
    fid = new_flight(services)
    item = create_item(client_awb(), flight_ids=[fid])
    # The first delivery took the space, then died before storing the booking.
    wanted = reservations.Wanted(item["ref_id"], [fid], 100.0, item["job_id"])
    assert reservations.reserve_many(services.db, services.locks, [wanted]) == [None]
    assert booked_kg(services, fid) == 100
    stored_elsewhere(services, item["awb"])
    [refused] = create_bookings(services, [item])  # the redelivery
    assert isinstance(refused, AwbTaken)
    assert booked_kg(services, fid) == 0


def test_each_bulk_item_gets_an_awb_and_a_redelivery_keeps_it(services):
    own, taken = client_awb(), client_awb()
    stored_elsewhere(services, taken)
    prefix = services.settings.AWB_PREFIX
    items = [
        request(),
        request(awb=own.replace("-", "")),
        request(awb=taken),
        request(awb=awb.awb_number(prefix, 1234567)),  # RadiantGo's own prefix
        request(awb="176-12345670"),  # its check digit is 5
    ]
    job_id = new_job_id()

    def run():
        return bulk.import_bookings(
            services.db,
            services.locks,
            items,
            job_id=job_id,
            now=utcnow(),
            chunk_size=2,
            min_connection_minutes=60,
            awbs=services.awb_stock,
        )["items"]

    first = run()
    issued, kept = first[0]["awb"], first[1]["awb"]
    assert issued.startswith(prefix + "-") and awb.broken_rule(issued) is None
    assert kept == own
    assert first[2]["problem"]["type"].endswith("/awb-taken")
    assert first[3]["problem"]["errors"] == {"awb": [awb.RESERVED_MESSAGE]}
    assert first[4]["problem"]["errors"] == {"awb": [awb.CHECK_DIGIT_MESSAGE]}
    for item in first[:2]:
        stored = services.db.bookings.find_one({"ref_id": item["ref_id"]})
        assert stored["awb"] == item["awb"]
    assert run() == first  # a redelivery: each stored booking keeps the AWB it has
