"""The webhook gateway through `deploy/serve` (two Granian worker processes): copies of one
delivery racing in from many clients, across both workers, store one event; distinct
deliveries sent beside them are each stored once. The duplicate check is the insert's own
`ON CONFLICT DO NOTHING`, so no process can see "not there yet" and store a second copy."""

from __future__ import annotations

import base64
import http.client
import json
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from backoffice.extensions import db
from backoffice.webhooks.models import WebhookEvent
from tests.support import deployed, free_port, serve_environment, signed_headers, workers_started

SECRET = "whsec_" + base64.b64encode(b"granian-shared-secret-01234567").decode()
COPIES = 24
DISTINCT = 24


@pytest.fixture
def server(app, database_url, tmp_path):
    """`deploy/serve` as `make run` starts it (two Granian workers); its port."""
    port = free_port()
    env = serve_environment(
        database_url, tmp_path, port, WEBHOOK_SECRETS=json.dumps({"acme": SECRET})
    )
    log = tmp_path / "serve.log"
    with deployed(env, port, log):
        assert workers_started(log) == 2, log.read_text()
        yield port


def deliver(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(
            "POST",
            "/api/webhooks/acme",
            body=body,
            headers={**headers, "Content-Type": "application/json"},
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_racing_copies_across_workers_store_one_event(server, in_db):
    body = b'{"type": "race", "amount": 1}'
    shared = signed_headers(SECRET, body, msg_id=f"msg_{uuid.uuid4().hex}")
    sends = [(body, shared)] * COPIES + [
        (body, signed_headers(SECRET, body)) for _ in range(DISTINCT)
    ]
    with ThreadPoolExecutor(len(sends)) as pool:
        answers = list(pool.map(lambda send: deliver(server, *send), sends))

    copies, distinct = answers[:COPIES], answers[COPIES:]
    assert Counter(status for status, _ in copies) == {201: 1, 200: COPIES - 1}
    assert len({answer["id"] for _, answer in copies}) == 1  # every duplicate names the first
    assert {answer["status"] for status, answer in copies if status == 200} == {"duplicate"}
    assert [status for status, _ in distinct] == [201] * DISTINCT
    assert len({answer["id"] for _, answer in distinct}) == DISTINCT

    def events() -> int:
        return db.session.scalar(select(func.count()).select_from(WebhookEvent))

    assert in_db(events) == 1 + DISTINCT
