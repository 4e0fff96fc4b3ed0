"""core.webhook_targets: which URLs a webhook may be posted to (core.egress
posts only to those, and tests/core/test_egress.py checks it does)."""

import pytest

from core.errors import WebhookUrlRefused
from core.webhook_targets import check_url, parse


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


def test_a_target_connects_to_the_ascii_host_and_names_it_in_host():
    target = parse("https://bücher.example:8443/höok?q=1", allow_private=False)
    assert (target.host, target.port, target.path) == (
        "xn--bcher-kva.example",
        8443,
        "/h%C3%B6ok?q=1",
    )
    assert target.host_header == "xn--bcher-kva.example:8443"
    assert parse("https://[2001:db8::1]/", allow_private=False).host_header == "[2001:db8::1]"
