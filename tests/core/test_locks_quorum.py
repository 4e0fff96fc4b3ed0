"""Locks over three independent Redis masters (LOCK_REDIS_URLS, Redlock):
held while two answer, unavailable (never contended) with two down, and the
fence still guarding every write."""

import subprocess
import time

import pytest

from core import transitions
from core.clock import utcnow
from core.errors import BookingLocked, LockHeld, ServiceUnavailable
from core.ids import new_job_id, new_ref_id
from core.locks import METRICS_KEY, LockManager, booking_lock_key
from core.services import connect_lock_masters
from core.settings import replace
from tests.conftest import moved_booking, stored_booking
from tools.processes import free_port, stop
from tools.stack import wait_for_port

DATA = {"origin": "DEL", "destination": "BLR", "pieces": 5, "weight_kg": 125.5}


@pytest.fixture
def masters(tmp_path):
    """Three redis-servers of this test's own, on free ports: (ports, processes)."""
    ports, procs = [], []
    try:
        for n in range(3):
            port = free_port()
            (tmp_path / str(n)).mkdir()
            command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
            command += ["--save", "", "--appendonly", "no", "--dir", str(tmp_path / str(n))]
            procs.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
            assert wait_for_port("127.0.0.1", port, 10)
            ports.append(port)
        yield ports, procs
    finally:
        for proc in procs:
            stop(proc)


@pytest.fixture
def quorum_settings(settings, masters):
    ports, _ = masters
    urls = ",".join(f"redis://127.0.0.1:{port}/0" for port in ports)
    return replace(settings, LOCK_REDIS_URLS=urls, REDIS_TIMEOUT_S=0.5)


@pytest.fixture
def new_locks(services, quorum_settings):
    """LockManagers over the three masters, each with clients of its own (as
    two worker processes would have); metrics on the app's Redis."""
    made = []

    def new():
        made.append(connect_lock_masters(quorum_settings))
        return LockManager(services.redis, quorum_settings, sleep=lambda s: None, masters=made[-1])

    yield new
    for clients in made:
        for client in clients:
            client.close()


def kill(masters, *which):
    _, procs = masters
    for n in which:
        procs[n].kill()  # SIGKILL: no shutdown, no goodbye to the clients
        procs[n].wait(5)


def test_the_settings_make_three_masters(quorum_settings):
    clients = connect_lock_masters(quorum_settings)
    assert len(clients) == 3
    assert LockManager(clients[0], quorum_settings, masters=clients).quorum == 2
    for client in clients:
        client.close()


def test_a_lock_is_taken_on_every_master_and_survives_one_killed(services, masters, new_locks):
    holder, other = new_locks(), new_locks()
    key = booking_lock_key(new_ref_id())
    held = holder.acquire(key, ttl_s=30)
    token = held.lock.key.decode()
    assert [m.get(key) for m in holder.masters] == [token] * 3
    assert not services.redis.exists(key)  # on the lock masters, not the app's Redis
    assert not any(m.exists(METRICS_KEY) for m in holder.masters)  # metrics stay on the app's

    kill(masters, 0)
    assert other.try_acquire(key) is None  # contention: two of three still hold it
    with pytest.raises(BookingLocked) as caught:
        other.acquire(key, max_attempts=2)
    assert caught.value.status == 409
    assert key in [h["key"] for h in other.held()]  # read from the masters that answer

    holder.release(held)  # the dead master does not make it raise
    assert [m.get(key) for m in holder.masters[1:]] == [None, None]
    again = other.acquire(key, ttl_s=30)  # a quorum of the two that are left
    assert again.attempts == 1
    other.release(again)


def test_two_masters_down_is_unavailable_never_contended(masters, new_locks):
    locks = new_locks()
    free, taken = booking_lock_key(new_ref_id()), booking_lock_key(new_ref_id())
    locks.acquire(taken, ttl_s=30)
    kill(masters, 0, 2)
    for key in (free, taken):
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable) as caught:
            locks.acquire(key)
        assert not isinstance(caught.value, LockHeld)
        assert (caught.value.status, caught.value.transient) == (503, True)  # a task retries
        assert time.monotonic() - started < 3  # one try, not fifty
        with pytest.raises(ServiceUnavailable):
            locks.try_acquire(key)


def move(services, locks, ref_id, target, job_id=None):
    return moved_booking(services, ref_id, target, job_id=job_id, locks=locks)


def test_the_fence_guards_every_write_over_three_masters(services, masters, new_locks):
    locks = new_locks()
    ref_id, job_id = stored_booking(services), new_job_id()
    first = move(services, locks, ref_id, "DEPARTED", job_id)
    again = move(services, locks, ref_id, "DEPARTED", job_id)  # a redelivery
    assert first["version"] == again["version"] == 2

    # A holder whose lock expired, with a master down meanwhile, cannot overwrite.
    stalled = locks.acquire(booking_lock_key(ref_id), ttl_s=0.2)
    seen = transitions.read_booking(services.db, ref_id)  # DEPARTED, version 2
    kill(masters, 1)
    time.sleep(0.35)
    move(services, new_locks(), ref_id, "ARRIVED")  # takes the lock on the two left
    with pytest.raises(transitions.StaleRead):
        transitions.apply_transition(
            services.db, seen, "CANCELLED", job_id=new_job_id(), data={}, now=utcnow()
        )
    locks.release(stalled)
    booking = services.db.bookings.find_one({"ref_id": ref_id})
    assert (booking["status"], booking["version"]) == ("ARRIVED", 3)

    kill(masters, 2)  # one of three left: the transition waits for a retry
    with pytest.raises(ServiceUnavailable):
        move(services, locks, ref_id, "DELIVERED")
    assert services.db.bookings.find_one({"ref_id": ref_id})["version"] == 3
