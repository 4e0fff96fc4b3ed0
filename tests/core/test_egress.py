"""core.egress against real receivers on 127.0.0.1 (tests/receivers.py): what a
delivery attempt comes to, and which URLs it refuses before connecting."""

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate

import pytest

from core.egress import MAX_RETRY_AFTER_S, check_url, post, retry_after_seconds
from core.errors import WebhookUrlRefused
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


@pytest.mark.parametrize(
    ("url", "detail"),
    [
        ("http://example.com/hook", "must be https, not 'http'"),
        ("https://user:secret@example.com/", "must not carry a user name or password"),
        ("https://user@example.com/", "must not carry a user name or password"),
        ("https://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata"),
        ("https://[fd00:ec2::254]/", "fd00:ec2::254 is a cloud metadata service"),
        ("https://169.254.1.1/", "169.254.1.1 is link-local"),
        ("https://10.1.2.3/", "address 10.1.2.3 is private"),
        ("https://192.168.0.10:8443/", "address 192.168.0.10 is private"),
        ("https://[::1]/", "address ::1 is loopback"),
        ("https://[fd12:3456::1]/", "address fd12:3456::1 is private"),
        ("https://[::ffff:10.0.0.1]/", "is private (it carries 10.0.0.1)"),
        ("https://[2002:a00:1::1]/", "is private (it carries 10.0.0.1)"),  # 6to4
        ("https://localhost/", "address 127.0.0.1 is loopback (localhost resolves to it)"),
        ("https://2130706433/", "address 127.0.0.1 is loopback"),  # 127.0.0.1 as one number
        ("https://0.0.0.0/", "address 0.0.0.0 is unspecified"),
        ("https://224.0.0.1/", "address 224.0.0.1 is multicast"),
        ("https://100.64.0.1/", "address 100.64.0.1 is not public"),  # carrier-grade NAT
        ("https://[64:ff9b::a00:1]/", "private (it carries 10.0.0.1)"),  # NAT64
        ("https://nowhere.invalid/", "host nowhere.invalid does not resolve"),
        ("https:///hook", "names no host"),
        ("https://example.com:0/", "port must not be 0"),
        ("https://example.com:99999/", "cannot be parsed"),
        ("https://example.com/a b", "spaces or control characters"),
        ("https://example.com/\r\nX-Injected: 1", "spaces or control characters"),
        ("https://example.com/" + "a" * 2048, "longer than 2048 characters"),
    ],
)
def test_check_url_refuses_with_the_reason(url, detail):
    with pytest.raises(WebhookUrlRefused) as refused:
        check_url(url, allow_private=False)
    assert detail in refused.value.detail
    problem = refused.value.to_problem()
    assert problem["status"] == 422 and problem["type"].endswith("/webhook-url-refused")


@pytest.mark.parametrize(
    "url",
    [
        "https://93.184.215.14/hook",
        "https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]:8443/",
        "https://[64:ff9b::5db8:d70e]/",  # 93.184.215.14 through NAT64
    ],
)
def test_check_url_takes_a_public_https_address(url):
    check_url(url, allow_private=False)


def test_allow_private_takes_http_and_local_receivers_but_never_metadata():
    check_url("http://127.0.0.1:8080/hook", allow_private=True)
    check_url("https://10.1.2.3/hook", allow_private=True)
    for url in ("http://169.254.169.254/", "https://[fd00:ec2::254]/", "http://0.0.0.0/"):
        with pytest.raises(WebhookUrlRefused):
            check_url(url, allow_private=True)
