"""The one output path (`backoffice.output`) writes, for every output schema the API
declares, exactly the bytes APIFlask's own path would: the schema validated from what the
view returned, dumped to JSON types by pydantic, written by the app's JSON provider."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from flask import Flask
from pydantic import BaseModel
from sqlalchemy import update

from backoffice.extensions import db
from backoffice.framework_internals import declared_view_spec
from backoffice.items import service
from backoffice.items.schemas import ItemOut
from backoffice.jobs.models import Job, JobStatus
from backoffice.output import json_answer, writer
from bench.fake_llm import serving
from tests.support import member_client


def endpoint_schema(app: Flask, endpoint: str, method: str) -> type[BaseModel] | None:
    """The output schema a view declares for `method` (None: none)."""
    view = app.view_functions[endpoint]
    view_class = getattr(view, "view_class", None)
    function = getattr(view_class, method.lower(), None) if view_class else view
    schema = declared_view_spec(function).get("response", {}).get("schema")
    return schema if isinstance(schema, type) else None


def declared_schema(app: Flask, method: str, path: str) -> type[BaseModel] | None:
    """The output schema the view answering `method path` declares."""
    endpoint, _ = app.url_map.bind("localhost").match(path.partition("?")[0], method)
    return endpoint_schema(app, endpoint, method)


def every_declared_schema(app: Flask) -> set[type[BaseModel]]:
    return {
        schema
        for rule in app.url_map.iter_rules()
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
        if (schema := endpoint_schema(app, rule.endpoint, method)) is not None
    }


@pytest.mark.parametrize(
    ("description", "created_at"),
    [
        (None, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),  # no microseconds: none written
        ('über ✓ "quoted"', datetime(2026, 1, 2, 3, 4, 5, 600, tzinfo=UTC)),
    ],
)
def test_a_row_is_written_as_the_schema_writes_it(app, description, created_at):
    with app.test_request_context():
        created = service.create_item("Widget", description=description, quantity=3)
        db.session.execute(
            update(service.ITEMS)
            .where(service.ITEMS.c.id == created.id)
            .values(created_at=created_at)
        )
        db.session.commit()
        row = service.get_item(created.id)
        from_row = writer(ItemOut).answer(row, 200).get_data()
    by_schema = orjson.dumps(ItemOut.model_validate(row).model_dump(mode="json"))
    assert from_row == by_schema
    assert orjson.loads(from_row)["created_at"] == created_at.isoformat()
    assert "version" not in orjson.loads(from_row)  # a column the schema does not show


def test_an_answer_carries_its_status_headers_and_json_type(app):
    with app.test_request_context():
        answer = json_answer({"a": 1}, 201, {"Location": "/x"})
    assert (answer.status_code, answer.mimetype, answer.headers["Location"]) == (
        201,
        "application/json",
        "/x",
    )
    assert orjson.loads(answer.get_data()) == {"a": 1}


def test_a_record_missing_a_required_field_is_a_bug_not_a_silent_null(app):
    with pytest.raises(TypeError, match="'quantity'"):
        writer(ItemOut).record({"id": "x", "name": "n", "description": None})


def finish(statement: Any) -> None:
    db.session.execute(statement)
    db.session.commit()


class Exchanges:
    """Requests through the real app, each answer kept with the schema its view declares."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.answers: list[tuple[str, type[BaseModel], bytes]] = []

    def __call__(self, client: Any, method: str, path: str, **kwargs: Any) -> Any:
        response = client.open(path, method=method, **kwargs)
        assert response.status_code < 300 or path.endswith("/health"), response.get_data()
        schema = declared_schema(self.app, method, path)
        if schema is not None and response.mimetype == "application/json":
            self.answers.append((f"{method} {path}", schema, response.get_data()))
        return response


def test_every_output_schema_is_written_as_pydantic_writes_it(
    app, make_app, database_url, queue_settings, client, as_user, admin, member, in_db
):
    with serving() as model:
        tools = make_app(
            DATABASE_URL=database_url,
            WEBHOOK_UNSIGNED_SOURCES="default",
            LLM_BASE_URL=model.url,
            LLM_MODEL="fake-model",
            **queue_settings,
        )
        exchange = Exchanges(tools)
        member_ = member_client(tools, client)
        admin_ = member_client(tools, as_user(admin))
        anonymous = tools.test_client()

        exchange(anonymous, "GET", "/")
        exchange(anonymous, "GET", "/health")
        exchange(anonymous, "GET", "/api/health")
        login = {"email": member.email, "password": member.password}
        tokens = exchange(anonymous, "POST", "/api/auth/token", json=login).json
        refresh = {"Authorization": f"Bearer {tokens['refresh_token']}"}
        exchange(anonymous, "POST", "/api/auth/refresh", headers=refresh)
        key = {"name": "CI", "scopes": ["items"], "expires_at": "2999-01-01T00:00:00.5+00:00"}
        exchange(member_, "POST", "/api/auth/api-keys", json=key)
        exchange(member_, "GET", "/api/auth/api-keys")

        item = exchange(member_, "POST", "/api/items", json={"name": "Gear", "quantity": 5}).json
        exchange(member_, "POST", "/api/items", json={"name": 'é "x"', "description": "d"})
        exchange(member_, "GET", f"/api/items/{item['id']}")
        exchange(member_, "PATCH", f"/api/items/{item['id']}", json={"quantity": 7})
        exchange(member_, "GET", "/api/items?limit=1")

        todo = exchange(member_, "POST", "/api/todos", json={"task": "Ship it"}).json
        exchange(member_, "PATCH", f"/api/todos/{todo['id']}", json={"done": True})
        exchange(member_, "GET", "/api/todos")

        lines = {"lines": [{"item_id": item["id"], "quantity": 2}], "note": "soon"}
        order = exchange(member_, "POST", "/api/orders", json=lines).json
        exchange(member_, "GET", f"/api/orders/{order['id']}")
        exchange(member_, "POST", f"/api/orders/{order['id']}/cancel")
        exchange(member_, "GET", "/api/orders")

        new_user = {"name": "Ana", "email": "ana@example.com", "password": "a-long-password"}
        exchange(admin_, "POST", "/api/users", json=new_user)
        exchange(member_, "GET", "/api/users/me")
        exchange(admin_, "GET", "/api/users?limit=2")

        analysis = {"type": "text-analysis", "input": {"text": "a b"}}
        job = exchange(member_, "POST", "/api/jobs", json=analysis).json
        result = {"words": 2, "ratio": 0.1 + 0.2, "nested": {"list": [1, None, True, "é"]}}
        done = update(Job).where(Job.id == uuid.UUID(job["id"]))
        in_db(lambda: finish(done.values(status=JobStatus.SUCCEEDED, result=result)))
        exchange(member_, "GET", f"/api/jobs/{job['id']}")
        exchange(member_, "GET", "/api/jobs")

        delivery = {"type": "ping", "id": "e1", "n": 1.5}
        event = exchange(anonymous, "POST", "/api/webhook", json=delivery).json
        exchange(admin_, "GET", f"/api/webhooks/events/{event['id']}")
        exchange(admin_, "POST", f"/api/webhooks/events/{event['id']}/replay")
        exchange(admin_, "GET", "/api/webhooks/events")

        exchange(member_, "POST", "/api/process", json={"input": "ß straße"})
        for a, b in (("1", "3"), ("-0", "5"), ("1e-320", "1e10"), ("2.5", "1")):
            exchange(member_, "GET", f"/api/divide?a={a}&b={b}")
        exchange(member_, "POST", "/api/chat", json={"message": "hello there"})
        exchange(member_, "GET", "/api/chat/usage")

    for request, schema, body in exchange.answers:
        expected = orjson.dumps(schema.model_validate_json(body).model_dump(mode="json"))
        assert body == expected, request
    written = {schema for _, schema, _ in exchange.answers}
    assert every_declared_schema(tools) - written == set()
