"""Air waybill numbers across real processes: two gunicorn ingresses (two
workers each) issuing AWBs at once, and again after a restart; and a
client's AWB whose door claim was lost, decided by the worker."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

from core import awb
from tests.conftest import CUSTOMER, OTHER_CUSTOMER, booking_body, wait_job

ACCEPTS = 50


def accept_many(bases: list[str]) -> list[str]:
    """ACCEPTS creates at once, spread over `bases`; the AWB of each 202."""

    def post(n: int) -> str:
        r = requests.post(
            bases[n % len(bases)] + "/api/bookings",
            json=booking_body(),
            headers=CUSTOMER,
            timeout=30,
        )
        assert r.status_code == 202, r.text
        return r.json()["awb"]

    with ThreadPoolExecutor(ACCEPTS) as pool:
        return list(pool.map(post, range(ACCEPTS)))


def test_awbs_are_unique_across_two_ingresses_and_their_restart(isolated_stack, services):
    prefix = f"{uuid.uuid4().int % 1000:03d}"
    services.db.awb_counters.delete_one({"_id": prefix})
    # Small blocks: the four processes refill many times while they race.
    stack = isolated_stack("awb", AWB_PREFIX=prefix, AWB_BLOCK_SIZE=3)
    bases = [stack.start_ingress(), stack.start_ingress()]
    before = accept_many(bases)
    assert len(set(before)) == ACCEPTS
    assert all(n.startswith(f"{prefix}-") and awb.broken_rule(n) is None for n in before)

    for proc in stack.processes:  # both ingresses stop; two new ones start
        proc.terminate()
        proc.wait(20)
    bases = [stack.start_ingress(), stack.start_ingress()]
    after = accept_many(bases)
    assert len(set(after)) == ACCEPTS
    assert not set(before) & set(after)
    assert min(after) > max(before)  # the counter only grows: no serial comes back


def test_a_client_awb_whose_claim_was_lost_is_decided_by_the_worker(isolated_stack):
    """Two creates of one AWB both accepted (the first's claim gone, as with a
    Redis that came back empty): the worker stores one, the other fails 409."""
    stack = isolated_stack("awb-race")
    base = stack.start_ingress()
    number = awb.awb_number("176", uuid.uuid4().int % (awb.SERIALS - 1) + 1)
    first = requests.post(
        base + "/api/bookings", json=booking_body(awb=number), headers=CUSTOMER, timeout=15
    )
    assert first.status_code == 202
    assert stack.services.redis.delete(awb.claim_key(number)) == 1
    second = requests.post(
        base + "/api/bookings", json=booking_body(awb=number), headers=OTHER_CUSTOMER, timeout=15
    )
    assert second.status_code == 202, second.text
    stack.start_worker()
    ended = [wait_job(base, r.headers["Location"], timeout=30) for r in (first, second)]
    assert sorted(job["state"] for job in ended) == ["failed", "succeeded"], ended
    [made] = [job for job in ended if job["state"] == "succeeded"]
    [refused] = [job for job in ended if job["state"] == "failed"]
    assert refused["error"]["status"] == 409 and refused["error"]["type"].endswith("/awb-taken")
    tracked = requests.get(f"{base}/api/awb/{number}", timeout=5).json()
    assert tracked["ref_id"] == made["result"]["booking"]["ref_id"]
    assert stack.services.db.bookings.count_documents({"awb": number}) == 1


def test_a_failed_create_is_tracked_by_awb_as_by_its_ref_id(live_server):
    """Its job failed (no such flight): to its submitter, a `booking-not-made`
    404 naming the job, by AWB as by ref_id; a plain 404 to anyone else."""
    body = booking_body(flight_ids=["QW9999-20340501"])
    r = requests.post(live_server + "/api/bookings", json=body, headers=CUSTOMER, timeout=15)
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert wait_job(live_server, r.headers["Location"])["state"] == "failed"
    by_awb = requests.get(f"{live_server}/api/awb/{accepted['awb']}", headers=CUSTOMER, timeout=5)
    by_ref = requests.get(live_server + accepted["links"]["booking"], headers=CUSTOMER, timeout=5)
    assert by_awb.status_code == by_ref.status_code == 404
    assert by_awb.json()["type"].endswith("/booking-not-made")
    assert by_awb.json()["job_id"] == by_ref.json()["job_id"] == accepted["job_id"]
    stranger = requests.get(f"{live_server}/api/awb/{accepted['awb']}", timeout=5)
    assert stranger.status_code == 404 and stranger.json()["type"].endswith("/not-found")
