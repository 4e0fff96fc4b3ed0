"""The database SIGKILLed again and again under a burst of flight bookings:
afterwards every flight's books balance (core.ledger: booked weight = its
live bookings' reservations, nothing pending, no orphan, no booking without
its space), each flight's booked weight is what its succeeded bookings weigh,
and once every booking is cancelled every flight is back to zero.

The database is a SecantusDB of the test's own, killed with SIGKILL (no
shutdown) and started again on the same port and data directory while a
real worker takes groups of creates, and later of cancels, that meet it
down at any step: taking space, recording it, storing the booking, ending
the job. Accepting needs no database (a create's record is held in Redis),
so the burst goes on through every outage."""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from datetime import UTC, timedelta
from pathlib import Path

import pytest

from core import ledger
from core.clock import utcnow
from core.flights import flight_document
from tests.conftest import bearer, booking_body, new_customer
from tools.processes import start_secantus, stop

SHIPPER: dict[str, str] = {}  # a customer of the test's own database
FLIGHTS = 4
BOOKINGS = 240
KILLS = 5


class Database:
    """A SecantusDB that can be SIGKILLed and started again in place."""

    def __init__(self, base: Path):
        self.base = base
        self.proc, self.uri = start_secantus(base / "db", base / "secantus.log")
        self.port = int(self.uri.split(":")[2].split("/")[0])

    def kill_and_restart(self, down_s: float) -> None:
        self.proc.kill()
        self.proc.wait(10)
        time.sleep(down_s)
        self.proc = start_secantus(self.base / "db", self.base / "secantus.log", port=self.port)[0]


def _flights(db) -> list[str]:
    """Flights CHA -> CHB with room for about half of what will be asked."""
    day = utcnow().replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=20)
    ids = []
    for n in range(FLIGHTS):
        departure = (day + timedelta(hours=6 + n)).astimezone(UTC)
        doc = flight_document(
            {
                "flight_number": f"CH{n:03d}",
                "airline": "Chaos Air",
                "origin": "CHA",
                "destination": "CHB",
                "departure_ts": departure,
                "arrival_ts": departure + timedelta(hours=2),
                "capacity_kg": 3000,
            },
            3000,
        )
        db.flights.insert_one(doc)
        ids.append(doc["_id"])
    return ids


def _jobs_ended(client, urls: list[str], timeout: float) -> dict[str, dict]:
    deadline, ended = time.monotonic() + timeout, {}
    while len(ended) < len(urls) and time.monotonic() < deadline:
        for url in urls:
            if url not in ended:
                r = client.get(url, headers=SHIPPER)  # 503 while the database is down
                if r.status_code == 200 and r.get_json()["state"] in ("succeeded", "failed"):
                    ended[url] = r.get_json()
        time.sleep(0.2)
    missing = [url for url in urls if url not in ended]
    assert not missing, [client.get(url, headers=SHIPPER).get_json() for url in missing]
    return ended


def _cancel(client, ref_id: str) -> str:
    """POST the cancel until it is accepted (the ingress reads the booking
    first: 503 while the database is down); returns the job's URL."""
    deadline = time.monotonic() + 30
    while True:
        r = client.post(f"/api/bookings/{ref_id}/cancel", json={}, headers=SHIPPER)
        if r.status_code == 202:
            return r.headers["Location"]
        assert r.status_code == 503 and time.monotonic() < deadline, r.get_json()
        time.sleep(0.2)


def _assert_books_balance(db, fids: list[str]) -> list[ledger.FlightLedger]:
    books = ledger.audit(db, fids)
    wrong = [b.summary() for b in books if not b.balanced or b.marked or b.creating]
    assert not wrong, wrong
    return books


@pytest.mark.slow(reason="a burst of bookings through five database outages")
@pytest.mark.heavy(reason="five database kills: ~27 s")
def test_database_killed_during_flight_bookings_leaves_every_flight_balanced(
    isolated_stack, tmp_path
):
    database = Database(tmp_path)
    stack = isolated_stack(
        "ledger-chaos", MONGODB_URI=database.uri, TASK_MAX_RETRIES=8, GROUP_COMMIT_WAIT_MS=50
    )
    try:
        fids = _flights(stack.services.db)
        SHIPPER.update(bearer(new_customer(stack.services.db)["api_key"]))
        stack.start_worker("chaos")
        client = stack.client()
        rng = random.Random(19)
        accepted, refused = [], 0

        def burst():
            nonlocal refused
            for n in range(BOOKINGS):
                body = booking_body(
                    origin="CHA",
                    destination="CHB",
                    weight_kg=rng.choice((20, 45.5, 80, 120)),
                    flight_ids=[fids[n % FLIGHTS]],
                )
                r = client.post("/api/bookings", json=body, headers=SHIPPER)
                if r.status_code == 202:
                    accepted.append((r.get_json()["ref_id"], r.headers["Location"], body))
                else:
                    refused += 1
                time.sleep(0.03)

        posting = threading.Thread(target=burst)
        posting.start()
        for _ in range(KILLS):  # each outage meets groups at whatever step they are
            time.sleep(rng.uniform(0.4, 1.2))
            database.kill_and_restart(down_s=rng.uniform(0.3, 1.0))
        posting.join(120)
        assert refused == 0  # accepting needs no database
        ended = _jobs_ended(client, [url for _, url, _ in accepted], timeout=120)

        db = stack.services.db
        books = {b.flight_id: b for b in _assert_books_balance(db, fids)}
        weighed = defaultdict(int)
        for ref_id, url, body in accepted:
            job = ended[url]
            stored = db.bookings.count_documents({"ref_id": ref_id})
            assert stored == (job["state"] == "succeeded"), (job, stored)
            if job["state"] == "succeeded":
                weighed[body["flight_ids"][0]] += round(body["weight_kg"] * 1000)
            else:
                assert job["error"]["type"].endswith("flight-full"), job["error"]
        assert {fid: books[fid].booked_g for fid in fids} == {fid: weighed[fid] for fid in fids}
        full = sum(1 for job in ended.values() if job["state"] == "failed")
        print(
            f"accepted {len(accepted)}, refused {refused}, succeeded {len(accepted) - full},"
            f" flight-full {full}, booked kg {sum(weighed.values()) / 1000:g}"
        )
        assert full > 0 and len(accepted) - full > 0  # flights filled up: both paths ran

        # Cancel every booking made, through two more outages.
        succeeded = [ref for ref, url, _ in accepted if ended[url]["state"] == "succeeded"]
        cancels = []
        outages = {len(succeeded) // 3: None, 2 * len(succeeded) // 3: None}
        for n, ref_id in enumerate(succeeded):
            cancels.append(_cancel(client, ref_id))
            if n in outages:
                outages[n] = threading.Thread(target=database.kill_and_restart, args=(0.5,))
                outages[n].start()
        for outage in outages.values():
            outage.join(30)
        cancelled = _jobs_ended(client, cancels, timeout=120)
        assert {job["state"] for job in cancelled.values()} == {"succeeded"}
        after = _assert_books_balance(db, fids)
        assert [b.booked_g for b in after] == [0] * FLIGHTS
        assert db.reservations.count_documents({"flight_id": {"$in": fids}}) == 0
    finally:
        stop(database.proc)
