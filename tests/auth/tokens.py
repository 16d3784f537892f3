"""Tokens a client might send: good ones, and every kind of bad one."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

from flask_jwt_extended import create_access_token


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _parts(token: str) -> tuple[dict, dict, str]:
    header, payload, signature = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(header))),
        json.loads(base64.urlsafe_b64decode(pad(payload))),
        signature,
    )


def claims_of(token: str) -> dict:
    return _parts(token)[1]


def expired(app, user_id, role: str = "member") -> str:
    with app.app_context():
        return create_access_token(
            str(user_id),
            additional_claims={"role": role, "gen": 0},
            expires_delta=timedelta(seconds=-30),
        )


def tampered(token: str) -> str:
    """The payload rewritten (role: admin) but the old signature kept."""
    header, payload, signature = _parts(token)
    payload["role"] = "admin"
    return f"{_b64(header)}.{_b64(payload)}.{signature}"


def unsigned(token: str) -> str:
    """The same claims with `alg: none` and no signature."""
    header, payload, _ = _parts(token)
    return f"{_b64({**header, 'alg': 'none'})}.{_b64(payload)}."


def other_secret(app, user_id) -> str:
    import jwt

    with app.app_context():
        claims = claims_of(
            create_access_token(str(user_id), additional_claims={"role": "member", "gen": 0})
        )
    return jwt.encode(claims, "not-our-secret-not-our-secret-not-ours", algorithm="HS256")
