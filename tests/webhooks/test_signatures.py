"""Standard Webhooks signatures (PRODUCT.md §2 Webhook gateway): pure, no app, no database."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.datastructures import Headers

from backoffice.errors import Unauthorized
from backoffice.webhooks.signatures import SignatureError, sign, verify

SECRET_B64 = base64.b64encode(b"a partner's shared secret, 32 b.").decode()
SECRET = f"whsec_{SECRET_B64}"
OTHER_SECRET = "whsec_" + base64.b64encode(b"somebody else's secret, 32 bytes").decode()
MSG_ID = "msg_2mR5bQ0yH8"
NOW = 1_700_000_000
BODY = b'{"type": "payment_success", "data": {"order_id": 42}}'


def headers_for(
    body: bytes = BODY,
    *,
    msg_id: str = MSG_ID,
    timestamp: int = NOW,
    secret: str = SECRET,
) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def rejection(headers: dict[str, str], body: bytes = BODY, **kwargs: int) -> SignatureError:
    with pytest.raises(SignatureError) as caught:
        verify(SECRET, headers, body, now=NOW, **kwargs)
    return caught.value


# --- valid deliveries -----------------------------------------------------------


def test_a_correctly_signed_delivery_returns_its_id():
    assert verify(SECRET, headers_for(), BODY, now=NOW) == MSG_ID


def test_sign_matches_an_hmac_computed_independently():
    expected = hmac.new(
        base64.b64decode(SECRET_B64), f"{MSG_ID}.{NOW}.{BODY.decode()}".encode(), hashlib.sha256
    ).digest()
    assert sign(SECRET, MSG_ID, NOW, BODY) == "v1," + base64.b64encode(expected).decode()


def test_the_published_standard_webhooks_vector():
    """The example from the Standard Webhooks / Svix documentation, verbatim."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id, timestamp, body = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    signature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert sign(secret, msg_id, timestamp, body) == signature
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }
    assert verify(secret, headers, body, now=timestamp) == msg_id


def test_any_matching_v1_entry_is_enough():
    """A partner rotating its secret signs with the old and the new one."""
    headers = headers_for()
    headers["webhook-signature"] = " ".join(
        [sign(OTHER_SECRET, MSG_ID, NOW, BODY), headers["webhook-signature"]]
    )
    assert verify(SECRET, headers, BODY, now=NOW) == MSG_ID


def test_entries_of_other_versions_are_ignored():
    good = headers_for()
    digest = good["webhook-signature"].removeprefix("v1,")
    only_v1a = {**good, "webhook-signature": f"v1a,{digest}"}
    assert "No v1 entry" in rejection(only_v1a).detail
    both = {**good, "webhook-signature": f"v1a,{digest} {good['webhook-signature']}"}
    assert verify(SECRET, both, BODY, now=NOW) == MSG_ID


def test_the_whsec_prefix_is_optional():
    assert verify(SECRET_B64, headers_for(), BODY, now=NOW) == MSG_ID
    assert sign(SECRET_B64, MSG_ID, NOW, BODY) == sign(SECRET, MSG_ID, NOW, BODY)


def test_header_names_are_case_insensitive():
    shouting = {name.upper(): value for name, value in headers_for().items()}
    assert verify(SECRET, shouting, BODY, now=NOW) == MSG_ID


def test_werkzeug_headers_are_accepted_as_they_are():
    assert verify(SECRET, Headers(headers_for()), BODY, now=NOW) == MSG_ID


def test_the_clock_defaults_to_now():
    now = int(time.time())
    assert verify(SECRET, headers_for(timestamp=now), BODY) == MSG_ID


# --- forged or altered deliveries -------------------------------------------------


def test_a_signature_made_with_another_secret_is_rejected():
    error = rejection(headers_for(secret=OTHER_SECRET))
    assert error.detail == "No v1 entry in webhook-signature matches this delivery."


def test_a_tampered_body_is_rejected():
    rejection(headers_for(), BODY.replace(b"42", b"43"))


def test_a_tampered_id_is_rejected():
    rejection({**headers_for(), "webhook-id": "msg_somebody_else"})


def test_a_tampered_timestamp_is_rejected():
    rejection({**headers_for(), "webhook-timestamp": str(NOW + 1)})


@pytest.mark.parametrize(
    "signature",
    [
        "v1,not base64!",
        "v1,@@@@",
        "v1,",
        "v1",
        "garbage",
        "v1,Zm9v",  # valid base64, wrong length
        "v1,ünïcödé",
    ],
)
def test_garbage_in_the_signature_header_is_a_mismatch_not_a_crash(signature):
    error = rejection({**headers_for(), "webhook-signature": signature})
    assert error.detail == "No v1 entry in webhook-signature matches this delivery."


def test_a_whitespace_only_signature_header_has_no_entries():
    error = rejection({**headers_for(), "webhook-signature": "   "})
    assert error.detail == "No v1 entry in webhook-signature matches this delivery."


# --- timestamps -------------------------------------------------------------------


def test_a_delivery_301_seconds_old_is_rejected():
    error = rejection(headers_for(timestamp=NOW - 301))
    assert error.detail == "webhook-timestamp is more than 300 s in the past."


def test_a_delivery_301_seconds_ahead_is_rejected():
    error = rejection(headers_for(timestamp=NOW + 301))
    assert error.detail == "webhook-timestamp is more than 300 s in the future."


@pytest.mark.parametrize("offset", [-300, 300])
def test_a_delivery_exactly_at_the_tolerance_is_accepted(offset):
    assert verify(SECRET, headers_for(timestamp=NOW + offset), BODY, now=NOW) == MSG_ID


def test_the_tolerance_is_a_parameter():
    headers = headers_for(timestamp=NOW - 61)
    assert verify(SECRET, headers, BODY, now=NOW) == MSG_ID
    assert "more than 60 s in the past" in rejection(headers, tolerance=60).detail


@pytest.mark.parametrize(
    "timestamp",
    [
        "soon",
        "1700000000.5",
        "-1700000000",
        "+1700000000",
        " 1700000000",
        "1_700_000_000",
        "\u0661\u0667",  # Arabic-Indic digits, which int() would accept
        "1" * 30,
    ],
)
def test_a_timestamp_that_is_not_plain_integer_seconds_is_rejected(timestamp):
    error = rejection({**headers_for(), "webhook-timestamp": timestamp})
    assert error.detail == "webhook-timestamp must be an integer number of Unix seconds."


# --- missing headers ----------------------------------------------------------------


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_named(missing):
    headers = {name: value for name, value in headers_for().items() if name != missing}
    assert rejection(headers).detail == f"Missing webhook header(s): {missing}."


@pytest.mark.parametrize("empty", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_an_empty_header_counts_as_missing(empty):
    assert rejection({**headers_for(), empty: ""}).detail == f"Missing webhook header(s): {empty}."


def test_every_missing_header_is_named_at_once():
    error = rejection({})
    assert error.detail == (
        "Missing webhook header(s): webhook-id, webhook-timestamp, webhook-signature."
    )


# --- the error itself -----------------------------------------------------------------


def test_a_signature_error_is_a_401_problem_with_its_own_type():
    error = rejection(headers_for(secret=OTHER_SECRET))
    assert isinstance(error, Unauthorized)
    assert (error.status, error.slug) == (401, "invalid-signature")
    assert error.headers["WWW-Authenticate"].startswith("Webhook-Signature")


def test_no_error_reveals_the_secret_or_the_expected_signature():
    expected = sign(SECRET, MSG_ID, NOW, BODY).removeprefix("v1,")
    cases = [
        headers_for(secret=OTHER_SECRET),
        headers_for(timestamp=NOW - 301),
        {**headers_for(), "webhook-timestamp": "x"},
        {"webhook-id": MSG_ID},
    ]
    for headers in cases:
        text = str(rejection(headers)) + repr(rejection(headers).extensions)
        assert SECRET_B64 not in text
        assert expected not in text


# --- configuration errors -------------------------------------------------------------


@pytest.mark.parametrize("secret", ["whsec_not base64!", "whsec_abc", "whsec_", "", "whsec_ünï"])
def test_a_secret_that_is_not_base64_is_a_configuration_error(secret):
    with pytest.raises(ValueError, match="webhook secret") as caught:
        verify(secret, headers_for(), BODY, now=NOW)
    assert not isinstance(caught.value, SignatureError)
    with pytest.raises(ValueError, match="webhook secret"):
        sign(secret, MSG_ID, NOW, BODY)


# --- properties --------------------------------------------------------------------------

ids = st.text(st.characters(codec="utf-8"), min_size=1, max_size=64)
timestamps = st.integers(min_value=0, max_value=2**40)


@given(body=st.binary(max_size=512), msg_id=ids, timestamp=timestamps)
def test_whatever_sign_makes_verify_accepts(body, msg_id, timestamp):
    headers = headers_for(body, msg_id=msg_id, timestamp=timestamp)
    assert verify(SECRET, headers, body, now=timestamp) == msg_id


@given(
    body=st.binary(min_size=1, max_size=512),
    msg_id=ids,
    timestamp=timestamps,
    data=st.data(),
)
def test_flipping_any_byte_of_the_body_breaks_the_signature(body, msg_id, timestamp, data):
    headers = headers_for(body, msg_id=msg_id, timestamp=timestamp)
    index = data.draw(st.integers(min_value=0, max_value=len(body) - 1), label="index")
    flip = data.draw(st.integers(min_value=1, max_value=255), label="xor")
    tampered = body[:index] + bytes([body[index] ^ flip]) + body[index + 1 :]
    with pytest.raises(SignatureError):
        verify(SECRET, headers, tampered, now=timestamp)
