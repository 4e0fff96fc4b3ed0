"""core.egress against real receivers on 127.0.0.1 (tests/receivers.py): what a
delivery attempt comes to, and which URLs it refuses before connecting."""

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate

import pytest

from core.egress import MAX_RETRY_AFTER_S, post, retry_after_seconds
from core.signing import headers, new_secret
from tests.receivers import CA_FILE, Receiver

BODY = b'{"type": "booking.departed", "data": {"ref_id": "RG123ABC456"}}'
SHORT = 0.5  # timeout_s for the tests that wait for one
NOW = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 GMT


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


@pytest.fixture
def other_receiver():
    with Receiver() as r:
        yield r


@pytest.fixture
def tls_receiver():
    with Receiver(tls=True) as r:
        yield r


def send(url, **options):
    sent = headers("msg_1", int(time.time()), BODY, [new_secret()])
    return post(url, BODY, sent, **{"allow_private": True, **options})


def test_a_2xx_answer_is_ok_and_the_receiver_gets_the_signed_body(receiver):
    receiver.answer(status=204)
    attempt = send(receiver.url("/hooks/in?x=1"))
    assert attempt.ok and attempt.status_code == 204 and attempt.error is None
    assert attempt.duration_ms >= 0 and attempt.retry_after_s is None
    [got] = receiver.requests
    assert (got.method, got.path, got.body) == ("POST", "/hooks/in?x=1", BODY)
    assert got.headers["webhook-id"] == "msg_1" and got.headers["webhook-signature"]
    assert got.headers["Host"] == f"127.0.0.1:{receiver.port}"
    assert got.headers["User-Agent"] == "RadiantGo-Webhooks/1"


def test_a_500_is_an_answer_but_not_ok(receiver):
    receiver.answer(status=500, body=b"database down")
    attempt = send(receiver.url())
    assert (attempt.status_code, attempt.error, attempt.ok) == (500, None, False)
    assert attempt.response_body == b"database down"


def test_a_receiver_that_never_answers_is_given_up_on_at_the_deadline(receiver):
    receiver.answer(delay_s=30)
    started = time.monotonic()
    attempt = send(receiver.url(), timeout_s=SHORT)
    assert time.monotonic() - started < SHORT + 1
    assert (attempt.status_code, attempt.error, attempt.ok) == (None, "timeout after 0.5 s", False)


@pytest.mark.parametrize("part", ["head", "body"])
def test_a_receiver_dripping_its_answer_cannot_hold_the_attempt_past_the_deadline(receiver, part):
    """Each byte comes well inside any per-read timeout; the whole never comes."""
    receiver.answer(drip=part, drip_s=0.05, body=b"x" * 1000)
    started = time.monotonic()
    attempt = send(receiver.url(), timeout_s=SHORT)
    assert time.monotonic() - started < SHORT + 1
    assert attempt.error == "timeout after 0.5 s" and not attempt.ok


def test_a_tls_handshake_that_never_ends_is_given_up_on_at_the_deadline():
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never speaks TLS
        started = time.monotonic()
        attempt = send(f"https://127.0.0.1:{silent.getsockname()[1]}/", timeout_s=SHORT)
    assert time.monotonic() - started < SHORT + 1
    assert attempt.error == "timeout after 0.5 s"


def test_a_redirect_is_an_answer_and_is_not_followed(receiver, other_receiver):
    receiver.answer(status=307, headers={"Location": other_receiver.url()})
    attempt = send(receiver.url())
    assert (attempt.status_code, attempt.error, attempt.ok) == (307, None, False)
    assert other_receiver.connections == 0


@pytest.mark.parametrize("cap", [10, 4096])
def test_only_the_first_bytes_of_a_huge_answer_are_read(receiver, cap):
    receiver.answer(endless_body=True)
    started = time.monotonic()
    attempt = send(receiver.url(), max_response_bytes=cap)
    assert time.monotonic() - started < 1
    assert attempt.ok and attempt.response_body == b"x" * cap


@pytest.mark.parametrize("status", [429, 503, 200])
def test_retry_after_is_read_from_any_answer(receiver, status):
    receiver.answer(status=status, headers={"Retry-After": "120"})
    assert send(receiver.url()).retry_after_s == 120.0


def test_retry_after_may_be_a_date(receiver):
    receiver.answer(status=503, headers={"Retry-After": formatdate(time.time() + 60, usegmt=True)})
    assert 55 <= send(receiver.url()).retry_after_s <= 60


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        (" 30 ", 30.0),
        ("Sun, 06 Nov 1994 08:49:37 GMT", 0.0),  # past: now
        ("Tue, 14 Nov 2023 22:15:00 GMT", 100.0),  # NOW + 100 s
        ("99999999999999999999", MAX_RETRY_AFTER_S),
        (str(int(MAX_RETRY_AFTER_S) + 1), MAX_RETRY_AFTER_S),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_values(value, seconds):
    assert retry_after_seconds(value, now=NOW) == seconds


def test_a_closed_port_is_connection_refused():
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    attempt = send(f"http://127.0.0.1:{port}/")
    assert (attempt.status_code, attempt.error) == (None, "connection refused")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_https_to_a_receiver_our_ca_signed(tls_receiver, host):
    attempt = send(tls_receiver.url(host=host), ca_file=CA_FILE)
    assert attempt.ok
    assert tls_receiver.requests[0].headers["Host"] == f"{host}:{tls_receiver.port}"


def test_https_verifies_the_certificate(tls_receiver):
    attempt = send(tls_receiver.url())  # certifi's CAs: the test CA is not one of them
    assert attempt.status_code is None and not attempt.ok
    assert attempt.error.startswith("TLS certificate rejected")
    assert tls_receiver.requests == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_without_allow_private_post_refuses_before_connecting(tls_receiver, receiver, host):
    attempt = send(tls_receiver.url(host=host), ca_file=CA_FILE, allow_private=False)
    assert attempt.error.startswith("refused: address 127.0.0.1 is loopback")
    assert attempt.status_code is None and not attempt.ok
    attempt = send(receiver.url(host=host), allow_private=False)
    assert attempt.error == "refused: the URL must be https, not 'http'"
    assert tls_receiver.connections == receiver.connections == 0


def test_post_never_raises_for_a_url_it_cannot_use():
    assert send("https://nowhere.invalid/").error.startswith("cannot resolve nowhere.invalid")
    assert send("ftp://example.com/").error == "refused: the URL must be https or http, not 'ftp'"


def test_posts_from_many_threads_at_once(receiver, tls_receiver):
    urls = [receiver.url()] * 20 + [tls_receiver.url()] * 20
    with ThreadPoolExecutor(max_workers=16) as pool:
        attempts = list(pool.map(lambda url: send(url, ca_file=CA_FILE), urls))
    assert all(a.ok for a in attempts)
    assert len(receiver.requests) == len(tls_receiver.requests) == 20
