"""Interactive work never waits behind background work: worker groups of their
own, and cache warming that coalesces instead of piling up."""

import os
import signal
from datetime import UTC, datetime

import requests

from core import coalesce, queues
from tests.conftest import ADMIN, flight_items, post_booking, wait_job

WARM = queues.job_type(queues.WARM_CACHE)


def warm(base):
    return requests.post(base + "/api/admin/cache/warm", headers=ADMIN, timeout=15)


def test_warm_requests_coalesce_while_one_is_queued(live_server, worker, services):
    os.kill(worker.pid, signal.SIGSTOP)  # the first warm job stays queued
    try:
        answers = [warm(live_server) for _ in range(5)]
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    assert {r.status_code for r in answers} == {202}
    job_ids = {r.json()["job_id"] for r in answers}
    assert len(job_ids) == 1, job_ids
    first = wait_job(live_server, answers[0].headers["Location"], timeout=60)
    assert first["state"] == "succeeded"
    assert coalesce.holder(services.redis, WARM) is None  # released when it ended
    again = warm(live_server)
    assert again.status_code == 202 and again.json()["job_id"] not in job_ids
    wait_job(live_server, again.headers["Location"], timeout=60)


def test_a_booking_is_committed_within_a_second_behind_warms_and_an_import(isolated_stack):
    """As `make run` lays it out: an interactive worker, and a background one at
    a lower CPU priority; ten warm requests and a 2,000-flight import queued
    first, then a booking that waits for its outcome."""
    stack = isolated_stack("iso")
    isolated = stack.settings
    stack.start_worker("interactive", queue_list=queues.INTERACTIVE)
    stack.start_worker(
        "background",
        wait=False,
        queue_list=queues.BACKGROUND,
        concurrency=isolated.BACKGROUND_CONCURRENCY,
        nice=isolated.BACKGROUND_NICE,
    )
    base = stack.start_ingress()
    for _ in range(10):
        assert warm(base).status_code == 202
    day = datetime(2035, 3, 1, tzinfo=UTC)
    imported = requests.post(
        base + "/api/admin/flights/bulk",
        json={"flights": flight_items("IS", 2000, day, "KIA", "KIB")},
        headers=ADMIN,
        timeout=60,
    )
    assert imported.status_code == 202
    r = post_booking(base, Prefer="wait=5")
    assert r.status_code == 201, r.text
    job = r.json()
    created = datetime.fromisoformat(job["created_at"].replace("Z", "+00:00"))
    finished = datetime.fromisoformat(job["finished_at"].replace("Z", "+00:00"))
    committed_in = (finished - created).total_seconds()
    print(f"booking committed {committed_in * 1000:.0f} ms after it was accepted")
    assert committed_in < 1.0
    import_job = wait_job(base, imported.headers["Location"], timeout=120)
    assert import_job["state"] == "succeeded"  # background work still got done
    # It was in the way: the import ended after the booking had committed.
    assert import_job["finished_at"] > job["finished_at"], (import_job, job)
