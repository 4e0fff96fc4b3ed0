"""Interactive work never waits behind background work: worker groups of their
own, and cache warming that coalesces instead of piling up."""

import os
import signal
import time
from datetime import UTC, datetime, timedelta

import requests

from core import coalesce, queues
from core.settings import load_settings
from tests.conftest import ADMIN, CUSTOMER, booking_body, wait_job
from tools.processes import delete_queues, start_ingress, start_worker, stop, wait_for_worker

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


def test_beat_skips_its_turn_while_a_warm_job_holds_the_claim(app, services, settings):
    from workers import runtime
    from workers.celery_app import create_celery_app

    runtime.install(create_celery_app(settings))
    from workers.tasks import warm_cache

    assert coalesce.holder_or_claim(services.redis, WARM, "held-by-a-job", 60, dict().get) is None
    try:
        assert warm_cache.apply(args=[]).get() is None  # skipped
    finally:
        coalesce.release(services.redis, WARM, "held-by-a-job")
    assert isinstance(warm_cache.apply(args=[]).get(), dict)  # its turn: a warm ran


def flights(count: int, day: datetime) -> list[dict]:
    return [
        {
            "flight_number": f"IS{n:04d}",
            "airline": "Isolation Air",
            "origin": "KIA",
            "destination": "KIB",
            "departure_ts": (day + timedelta(minutes=n)).isoformat(),
            "arrival_ts": (day + timedelta(minutes=n + 90)).isoformat(),
        }
        for n in range(count)
    ]


def test_a_booking_is_committed_within_a_second_behind_warms_and_an_import(
    settings, services, tmp_path
):
    """As `make run` lays it out: an interactive worker, and a background one at
    a lower CPU priority; ten warm requests and a 2,000-flight import queued
    first, then a booking that waits for its outcome."""
    isolated = load_settings(
        {}, **{**settings.__dict__, "QUEUE_NAMESPACE": settings.QUEUE_NAMESPACE + "-iso"}
    )
    since = time.time()
    interactive = start_worker(
        isolated, tmp_path / "interactive.log", name="interactive", queue_list=queues.INTERACTIVE
    )
    background = start_worker(
        isolated,
        tmp_path / "background.log",
        name="background",
        queue_list=queues.BACKGROUND,
        concurrency=isolated.BACKGROUND_CONCURRENCY,
        nice=isolated.BACKGROUND_NICE,
    )
    ingress = None
    try:
        wait_for_worker(services.redis, interactive, since)
        ingress, base = start_ingress(isolated, tmp_path / "ingress.log")
        for _ in range(10):
            assert warm(base).status_code == 202
        day = datetime(2035, 3, 1, tzinfo=UTC)
        imported = requests.post(
            base + "/api/admin/flights/bulk",
            json={"flights": flights(2000, day)},
            headers=ADMIN,
            timeout=60,
        )
        assert imported.status_code == 202
        r = requests.post(
            base + "/api/bookings",
            json=booking_body(),
            headers={**CUSTOMER, "Prefer": "wait=5"},
            timeout=15,
        )
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
    finally:
        for proc in (ingress, interactive, background):
            if proc is not None:
                stop(proc)
        delete_queues(isolated)
