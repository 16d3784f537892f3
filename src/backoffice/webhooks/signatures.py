"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

A partner signs `{webhook-id}.{webhook-timestamp}.{raw body}` with HMAC-SHA256 under a
shared secret and sends one or more `v1,<base64>` entries in `webhook-signature`. The
id makes each delivery unique, the timestamp bounds how long a captured delivery can
be replayed, and several entries let a partner rotate its secret without downtime.
Written here rather than taken from the `standardwebhooks` package, which fixes the tolerance
at five minutes, reads the clock itself and takes `float()` timestamps; it is forty lines of
`hmac`. Interoperability with it is tested (tests/webhooks/test_standard_webhooks_interop.py).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import time
from collections.abc import Iterable
from typing import Protocol

from backoffice.errors import Unauthorized

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's marker, not a secret)
VERSION = "v1"
#: How far (seconds) a delivery's timestamp may lie from now, either way.
DEFAULT_TOLERANCE = 300
#: Plain ASCII digits only: `int()` would also take " 1", "+1", "1_0" and other scripts' digits.
UNIX_SECONDS = re.compile(r"[0-9]{1,20}")


class SignatureError(Unauthorized):
    """A delivery whose signature headers are missing, malformed, stale or wrong."""

    slug = "invalid-signature"
    challenge = 'Webhook-Signature realm="webhooks"'

    def __init__(self, detail: str) -> None:
        super().__init__(detail)


class HeaderItems(Protocol):
    """Anything with `(name, value)` items: a dict, or Werkzeug's `Headers` as it is."""

    def items(self) -> Iterable[tuple[str, str]]: ...


@functools.lru_cache(maxsize=64)
def secret_key(secret: str) -> bytes:
    """The HMAC key a `whsec_<base64>` secret (the prefix optional) stands for (decoded
    once per secret, not per delivery).

    A bad secret is the operator's mistake, not the partner's, so it is a ValueError
    (the app fails loudly) and the message never repeats the secret.
    """
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError("A webhook secret must be base64, optionally after 'whsec_'.") from error
    if not key:
        raise ValueError("A webhook secret must not be empty.")
    return key


def _digest(key: bytes, msg_id: str, timestamp: str, body: bytes) -> bytes:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,<base64>` entry a sender puts in `webhook-signature` for this delivery."""
    digest = _digest(secret_key(secret), msg_id, str(timestamp), body)
    return f"{VERSION},{base64.b64encode(digest).decode()}"


def _normalised(headers: HeaderItems) -> dict[str, list[str]]:
    """Header values by lower-cased name, so a plain dict is as forgiving as HTTP is."""
    values: dict[str, list[str]] = {}
    for name, value in headers.items():
        if value:
            values.setdefault(name.lower(), []).append(value)
    return values


def _candidates(header_values: list[str]) -> Iterable[bytes]:
    """The decoded v1 signatures; other versions and undecodable entries are skipped."""
    for entry in " ".join(header_values).split():
        version, _, encoded = entry.partition(",")
        if version != VERSION:
            continue
        try:
            yield base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue


def verify(
    secret: str,
    headers: HeaderItems,
    body: bytes,
    *,
    now: int | None = None,
    tolerance: int = DEFAULT_TOLERANCE,
) -> str:
    """The `webhook-id` of a delivery signed with `secret`, or SignatureError saying why not.

    `body` is the raw request bytes: a re-serialised JSON body would not match. The
    timestamp is checked before the signature so a replayed delivery costs no HMAC,
    and every v1 entry is compared in constant time, so a partner mid-rotation (old and
    new secret both signing) is accepted by whichever secret we hold.
    """
    key = secret_key(secret)
    values = _normalised(headers)
    required = (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)
    missing = [name for name in required if name not in values]
    if missing:
        raise SignatureError(f"Missing webhook header(s): {', '.join(missing)}.")
    msg_id, timestamp = values[ID_HEADER][0], values[TIMESTAMP_HEADER][0]
    if not UNIX_SECONDS.fullmatch(timestamp):
        raise SignatureError(f"{TIMESTAMP_HEADER} must be an integer number of Unix seconds.")
    age = (int(time.time()) if now is None else now) - int(timestamp)
    if age > tolerance:
        raise SignatureError(f"{TIMESTAMP_HEADER} is more than {tolerance} s in the past.")
    if -age > tolerance:
        raise SignatureError(f"{TIMESTAMP_HEADER} is more than {tolerance} s in the future.")
    expected = _digest(key, msg_id, timestamp, body)
    matched = False
    for candidate in _candidates(values[SIGNATURE_HEADER]):
        # No early exit: how many entries were tried does not depend on which one matched.
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureError(f"No {VERSION} entry in {SIGNATURE_HEADER} matches this delivery.")
    return msg_id
