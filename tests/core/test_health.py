"""core.health's probe cache and its broker ping, on the real RabbitMQ."""

import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from kombu import Connection
from kombu.exceptions import OperationalError

from core.health import BrokerPing, ProbeCache
from tools.processes import free_port


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_result_is_reused_for_ttl_seconds():
    clock, answers = Clock(), iter(range(100))
    cache = ProbeCache(lambda: next(answers), ttl=1.0, clock=clock)
    assert [cache.get() for _ in range(5)] == [0] * 5
    clock.now += 0.99
    assert cache.get() == 0
    clock.now += 0.01
    assert cache.get() == 1
    assert cache.runs == 2


def test_concurrent_callers_wait_for_the_round_in_progress():
    started, release = threading.Event(), threading.Event()

    def slow_round():
        started.set()
        release.wait(5)
        return "round"

    cache = ProbeCache(slow_round, ttl=60.0)
    with ThreadPoolExecutor(16) as pool:
        first = pool.submit(cache.get)
        assert started.wait(5)
        others = [pool.submit(cache.get) for _ in range(15)]
        release.set()
        results = [first.result(5)] + [f.result(5) for f in others]
    assert results == ["round"] * 16
    assert cache.runs == 1


@pytest.fixture
def connections(settings):
    """Connections the ping opens, kept so a test can cut one."""
    made: list[Connection] = []

    def connect(url=settings.RABBITMQ_URL):
        made.append(Connection(url, transport_options={"read_timeout": 2, "write_timeout": 2}))
        return made[-1]

    yield made, connect
    for connection in made:
        connection.collect()


def test_pings_reuse_one_connection(connections):
    made, connect = connections
    ping = BrokerPing(connect, timeout_s=2.0)
    for _ in range(20):
        ping()
    assert ping.opened == 1 and len(made) == 1
    ping.close()


def test_a_dropped_connection_is_replaced_within_the_same_ping(connections):
    made, connect = connections
    ping = BrokerPing(connect, timeout_s=2.0)
    ping()
    # The broker's side goes away (a restart, an idle timeout): the socket is dead.
    made[0].connection.sock.shutdown(socket.SHUT_RDWR)
    ping()  # no error: the kept connection failed, a fresh one answered
    assert ping.opened == 2
    ping()
    assert ping.opened == 2
    ping.close()


def test_a_broker_that_is_down_fails_every_ping_and_keeps_nothing(connections):
    _, connect = connections
    url = f"amqp://guest:guest@127.0.0.1:{free_port()}//"
    ping = BrokerPing(lambda: connect(url), timeout_s=0.5)
    for attempt in range(1, 4):
        with pytest.raises(OperationalError):
            ping()
        assert ping.opened == attempt
