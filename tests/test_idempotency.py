"""`Idempotency-Key` on creating POSTs (PRODUCT.md §1, Idempotency)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from backoffice.database import utcnow
from backoffice.errors import Conflict
from backoffice.extensions import db
from backoffice.idempotency import request_fingerprint, service
from backoffice.idempotency.models import IdempotencyRecord
from backoffice.items.models import Item
from tests.support import assert_problem, count_rows


def post(client, body, key="key-1"):
    return client.post("/api/items", json=body, headers={"Idempotency-Key": key})


def test_a_retry_with_the_same_key_and_body_replays_the_first_answer(client, in_db):
    first = post(client, {"name": "Once", "quantity": 1})
    again = post(client, {"quantity": 1, "name": "Once"})  # same body, keys in another order
    assert first.status_code == again.status_code == 201
    assert again.json == first.json
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["ETag"] == first.headers["ETag"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert in_db(lambda: count_rows(Item)) == 1


def test_the_same_key_with_another_body_is_422_and_creates_nothing(client, in_db):
    post(client, {"name": "First"})
    response = post(client, {"name": "Second"})
    assert_problem(response, 422, "Idempotency-Key")
    assert in_db(lambda: count_rows(Item)) == 1


def test_a_retry_while_the_first_is_in_flight_is_409(app, client, member, in_db):
    with app.test_request_context("/api/items", method="POST", json={"name": "Slow"}):
        fingerprint = request_fingerprint()
        first = service.claim(str(member.id), "busy", fingerprint, ttl=60)
        assert isinstance(first, service.Claim)  # the first request, still running
    assert_problem(post(client, {"name": "Slow"}, key="busy"), 409)
    assert in_db(lambda: count_rows(Item)) == 0


def test_a_claim_abandoned_by_a_dead_worker_is_taken_over(app, client, member, in_db):
    with app.test_request_context("/api/items", method="POST", json={"name": "Orphan"}):
        fingerprint = request_fingerprint()
        assert isinstance(
            service.claim(str(member.id), "orphan", fingerprint, ttl=3600), service.Claim
        )

    def age_the_claim() -> None:
        db.session.execute(
            update(IdempotencyRecord).values(created_at=utcnow() - timedelta(minutes=5))
        )
        db.session.commit()

    in_db(age_the_claim)
    response = post(client, {"name": "Orphan"}, key="orphan")
    assert response.status_code == 201
    assert in_db(lambda: count_rows(Item)) == 1


def test_a_claim_taken_over_can_no_longer_store_its_answer(app, member, in_db):
    with app.test_request_context("/api/items", method="POST", json={"name": "Late"}):
        fingerprint = request_fingerprint()
        dead = service.claim(str(member.id), "late", fingerprint, ttl=3600)
        assert isinstance(dead, service.Claim)
        db.session.execute(
            update(IdempotencyRecord).values(created_at=utcnow() - timedelta(minutes=5))
        )
        db.session.commit()
        alive = service.claim(str(member.id), "late", fingerprint, ttl=3600)
        assert isinstance(alive, service.Claim)
        assert alive.record_id != dead.record_id
        stored = service.StoredResponse(201, {}, b"{}")
        with pytest.raises(Conflict):
            service.hold(dead)
        db.session.rollback()
        with pytest.raises(Conflict):
            service.complete(dead, stored)
        db.session.rollback()
        service.hold(alive)
        service.complete(alive, stored)
        db.session.commit()
    assert in_db(lambda: count_rows(IdempotencyRecord)) == 1


def test_keys_are_scoped_by_the_authenticated_caller_whatever_the_credential(client, member, in_db):
    first = post(client, {"name": "Mine"}, key="mine")
    key = client.post("/api/auth/api-keys", json={"name": "bot", "scopes": ["items"]}).json["key"]
    by_key = client.application.test_client()
    response = by_key.post(
        "/api/items", json={"name": "Mine"}, headers={"Idempotency-Key": "mine", "X-API-Key": key}
    )
    assert response.status_code == 201
    assert response.headers["Idempotent-Replayed"] == "true"
    assert response.json == first.json
    assert in_db(lambda: count_rows(Item)) == 1


def test_the_same_key_from_another_user_is_another_request(client, as_user, make_user, in_db):
    post(client, {"name": "Mine"}, key="shared")
    other = as_user(make_user())
    assert post(other, {"name": "Theirs"}, key="shared").status_code == 201
    assert in_db(lambda: count_rows(Item)) == 2


def test_different_keys_create_different_items(client, in_db):
    post(client, {"name": "Same"}, key="a")
    post(client, {"name": "Same"}, key="b")
    assert in_db(lambda: count_rows(Item)) == 2


def test_a_failed_request_releases_its_key(client, in_db):
    assert_problem(post(client, {"name": ""}, key="retry-me"), 422)
    assert in_db(lambda: count_rows(IdempotencyRecord)) == 0
    assert post(client, {"name": "Fixed"}, key="retry-me").status_code == 201
    assert in_db(lambda: count_rows(Item)) == 1


def test_an_expired_key_can_be_used_again(app, client, in_db):
    app.config["IDEMPOTENCY_TTL_SECONDS"] = -1
    try:
        post(client, {"name": "Old"}, key="reuse")
        assert post(client, {"name": "New"}, key="reuse").status_code == 201
    finally:
        app.config["IDEMPOTENCY_TTL_SECONDS"] = 86400
    assert in_db(lambda: count_rows(Item)) == 2


@pytest.mark.parametrize("key", ["", "has space", "k" * 256, "naïve"])
def test_a_malformed_key_is_400(client, in_db, key):
    assert_problem(post(client, {"name": "x"}, key=key), 400, "Idempotency-Key")
    assert in_db(lambda: count_rows(Item)) == 0
