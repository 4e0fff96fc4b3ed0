"""core/waiting.py: a request waits for its job's finished notice, with a cap
on how many wait at once, on the real Redis."""

import threading
import time
import uuid

import pytest

from core import waiting
from core.waiting import JobWaiter, WaitersBusy, notify_job_finished


def job(state: str) -> dict:
    return {"_id": "j", "state": state}


def waiting_in(
    waiter: JobWaiter, job_id: str, load, timeout: float
) -> tuple[threading.Thread, dict]:
    """wait() in a thread of its own; returns it once the wait holds its slot."""
    answer: dict = {}

    def run():
        answer["job"] = waiter.wait(job_id, timeout, load)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while waiter.in_use == 0:
        assert time.monotonic() < deadline, "the wait never started"
        time.sleep(0.01)
    return thread, answer


def test_a_published_finish_ends_the_wait(services, monkeypatch):
    # No fallback poll within the test's time: only the notice can wake it.
    monkeypatch.setattr(waiting, "FALLBACK_POLL_S", 60)
    state = {"now": "queued"}
    job_id = str(uuid.uuid4())
    waiter = JobWaiter(services.redis, max_waiters=2)
    thread, answer = waiting_in(waiter, job_id, lambda: job(state["now"]), timeout=60)
    state["now"] = "succeeded"
    deadline = time.monotonic() + 10
    while thread.is_alive():  # sent again until the listener, subscribing, hears one
        assert time.monotonic() < deadline, "the notice did not end the wait"
        notify_job_finished(services.redis, job_id)
        thread.join(0.1)
    assert answer["job"]["state"] == "succeeded"
    assert waiter.in_use == 0


def test_an_unfinished_job_is_answered_as_it_stands_after_the_timeout(services):
    waiter = JobWaiter(services.redis, max_waiters=1)
    started = time.monotonic()
    assert waiter.wait(str(uuid.uuid4()), 0.3, lambda: job("running"))["state"] == "running"
    assert time.monotonic() - started >= 0.3


def test_an_unknown_or_finished_job_is_answered_at_once(services):
    waiter = JobWaiter(services.redis, max_waiters=1)
    assert waiter.wait(str(uuid.uuid4()), 30, lambda: None) is None
    assert waiter.wait(str(uuid.uuid4()), 30, lambda: job("failed"))["state"] == "failed"


def test_waiters_past_the_cap_are_refused_at_once_until_a_slot_frees(services):
    state = {"now": "queued"}
    waiter = JobWaiter(services.redis, max_waiters=1)
    thread, answer = waiting_in(waiter, "first", lambda: job(state["now"]), timeout=30)
    with pytest.raises(WaitersBusy):
        waiter.wait("second", 30, lambda: job("queued"))
    state["now"] = "succeeded"  # seen by the first wait's next poll
    thread.join(10)
    assert answer["job"]["state"] == "succeeded"
    assert waiter.wait("second", 30, lambda: job("succeeded"))["state"] == "succeeded"
