"""core.signing checked against the Standard Webhooks reference implementation
(the `standardwebhooks` package), which is what receivers verify with."""

import base64
import json
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from core.signing import headers, new_secret, signature

BODY = json.dumps({"type": "booking.departed", "data": {"ref_id": "RG123ABC456"}}).encode()


def test_a_new_secret_is_32_random_bytes_with_the_standards_prefix():
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert new_secret() != secret


def test_the_reference_implementation_verifies_a_signed_delivery():
    secret = new_secret()
    sent = headers("msg_1", int(time.time()), BODY, [secret])
    assert Webhook(secret).verify(BODY, sent) == json.loads(BODY)


def test_the_headers_name_the_message_its_time_and_the_sender():
    sent = headers("msg_1", 1_700_000_000, BODY, [new_secret()])
    assert sent["webhook-id"] == "msg_1"
    assert sent["webhook-timestamp"] == "1700000000"
    assert sent["Content-Type"] == "application/json"
    assert sent["User-Agent"] == "RadiantGo-Webhooks/1"


def test_the_signature_is_the_reference_one():
    secret = new_secret()
    ours = signature(secret, "msg_1", 1_700_000_000, BODY)
    theirs = Webhook(secret).sign(
        "msg_1", datetime.fromtimestamp(1_700_000_000, UTC), BODY.decode()
    )
    assert ours == theirs


def test_while_rotating_both_the_old_and_the_new_secret_verify():
    old, new = new_secret(), new_secret()
    sent = headers("msg_2", int(time.time()), BODY, [old, new])
    assert len(sent["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(BODY, sent)
    Webhook(new).verify(BODY, sent)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, sent)


def test_a_tampered_body_fails_verification():
    secret = new_secret()
    sent = headers("msg_3", int(time.time()), BODY, [secret])
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"RG123ABC456", b"RG123ABC457"), sent)


def test_a_changed_id_or_time_fails_verification():
    secret = new_secret()
    now = int(time.time())
    sent = headers("msg_4", now, BODY, [secret])
    for changed in ({"webhook-id": "msg_5"}, {"webhook-timestamp": str(now - 1)}):
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(BODY, {**sent, **changed})


@pytest.mark.parametrize("secrets", [[], ["not-prefixed"], ["whsec_not base64!"]])
def test_signing_without_a_proper_secret_is_an_error(secrets):
    with pytest.raises(ValueError):
        headers("msg_6", 1_700_000_000, BODY, secrets)
