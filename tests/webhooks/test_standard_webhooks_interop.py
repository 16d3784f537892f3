"""Our signatures and the reference `standardwebhooks` package agree, both ways.

We verify deliveries ourselves (docs/architecture/libraries.md says why); this is what
keeps that honest: whatever a partner signs with the package is accepted here, whatever
we sign (the test partners, the docs' examples) the package accepts, and a delivery one
rejects the other rejects too.
"""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from backoffice.webhooks.signatures import SignatureError, sign, verify

MSG_IDS = st.from_regex(r"msg_[A-Za-z0-9]{1,30}", fullmatch=True)
SECRET = "whsec_" + base64.b64encode(b"interop-secret-32-bytes-long!!!!").decode()


def headers(msg_id: str, timestamp: int, signature: str) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


@settings(max_examples=50, deadline=None)
@given(body=st.binary(max_size=2048), msg_id=MSG_IDS)
def test_a_delivery_the_package_signs_is_accepted_here(body: bytes, msg_id: str):
    now = int(time.time())
    signature = Webhook(SECRET).sign(msg_id, datetime.fromtimestamp(now, tz=UTC), body)
    assert verify(SECRET, headers(msg_id, now, signature), body, now=now) == msg_id


@settings(max_examples=50, deadline=None)
@given(body=st.binary(max_size=2048), msg_id=MSG_IDS)
def test_a_delivery_we_sign_is_accepted_by_the_package(body: bytes, msg_id: str):
    now = int(time.time())
    signed = headers(msg_id, now, sign(SECRET, msg_id, now, body))
    Webhook(SECRET).verify(body, signed, json_parse=False)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda h, b: (h | {"webhook-id": "msg_other"}, b), id="id"),
        pytest.param(lambda h, b: (h, b + b" "), id="body"),
        pytest.param(
            lambda h, b: (h | {"webhook-timestamp": str(int(h["webhook-timestamp"]) + 1)}, b),
            id="timestamp",
        ),
        pytest.param(
            lambda h, b: (h | {"webhook-timestamp": str(int(time.time()) - 600)}, b), id="stale"
        ),
    ],
)
def test_a_delivery_both_reject(tamper):
    now = int(time.time())
    body = b'{"type": "payment_success"}'
    good = headers("msg_1", now, sign(SECRET, "msg_1", now, body))
    bad_headers, bad_body = tamper(good, body)
    with pytest.raises(SignatureError):
        verify(SECRET, bad_headers, bad_body, now=now)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(bad_body, bad_headers, json_parse=False)
