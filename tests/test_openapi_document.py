"""The OpenAPI document is valid, names each operation and model once, shows the headers
a client sends and reads, and is good enough to generate a working client from.

The document does not depend on the database: SQLite only.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from apiflask import APIBlueprint, APIFlask
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from backoffice.schemas import VERSIONED_MARK, VersionedOutput
from tests.support import Account, login

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

METHODS = {"get", "put", "post", "delete", "patch"}


@pytest.fixture
def spec(client) -> dict[str, Any]:
    return dict(client.get("/openapi.json").json)


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, items in spec["paths"].items():
        for method, operation in items.items():
            if method in METHODS:
                yield path, method, operation


def header_names(operation: dict[str, Any]) -> set[str]:
    return {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}


def response_headers(operation: dict[str, Any], status: str) -> set[str]:
    return set(operation["responses"][status].get("headers", {}))


def test_the_document_is_valid_openapi_3_1(spec):
    assert spec["openapi"].startswith("3.1")
    validate(spec)  # raises on any error, a duplicate tag included


def test_every_operation_has_a_unique_stable_id(spec):
    ids = [operation.get("operationId") for _, _, operation in operations(spec)]
    assert None not in ids
    assert [name for name, count in Counter(ids).items() if count > 1] == []
    by_route = {(path, method): op["operationId"] for path, method, op in operations(spec)}
    assert by_route[("/api/items", "post")] == "create_item"
    assert by_route[("/api/todos/{todo_id}", "put")] == "replace_todo"
    assert by_route[("/api/users/me", "patch")] == "update_me"


def test_every_model_is_one_component(spec):
    names = list(spec["components"]["schemas"])
    assert [name for name in names if "." in name] == []
    assert {"ItemOut", "OrderOut", "LineOut", "JobStatus", "Role"} <= set(names)
    refs = {ref for ref in _refs(spec) if ref.startswith("#/components/schemas/")}
    assert {ref.rpartition("/")[2] for ref in refs} <= set(names)


def _refs(node: Any) -> Iterator[str]:
    """Every reference: each `$ref`, and each target of a discriminator's mapping."""
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        yield from node.get("discriminator", {}).get("mapping", {}).values()
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_tags_are_listed_once(spec):
    names = [tag["name"] for tag in spec["tags"]]
    assert len(names) == len(set(names))


def test_security_schemes_name_the_real_paths(spec):
    schemes = spec["components"]["securitySchemes"]
    assert all("{prefix}" not in s.get("description", "") for s in schemes.values())
    assert "POST /api/auth/token" in schemes["BearerAuth"]["description"]


def test_request_headers_are_documented_where_they_are_read(spec):
    paths = spec["paths"]
    for path in ("/api/items", "/api/todos", "/api/orders", "/api/jobs"):
        assert "Idempotency-Key" in header_names(paths[path]["post"]), path
    key = next(p for p in paths["/api/items"]["post"]["parameters"] if p["in"] == "header")
    assert key["schema"]["pattern"] == "^[\\x21-\\x7e]{1,255}$"
    for method in ("put", "patch", "delete"):
        assert "If-Match" in header_names(paths["/api/items/{item_id}"][method]), method
    for path in ("/api/items/{item_id}", "/api/todos/{todo_id}", "/api/orders/{order_id}"):
        assert "If-None-Match" in header_names(paths[path]["get"]), path
    assert header_names(paths["/api/users"]["post"]) == set()


def test_response_headers_are_documented_where_they_are_sent(spec):
    paths = spec["paths"]
    assert {"Location", "ETag", "Idempotent-Replayed"} <= response_headers(
        paths["/api/items"]["post"], "201"
    )
    assert "ETag" in response_headers(paths["/api/items/{item_id}"]["get"], "200")
    assert "ETag" in response_headers(paths["/api/items/{item_id}"]["get"], "304")
    assert "Location" in response_headers(paths["/api/jobs"]["post"], "202")
    assert "Link" in response_headers(paths["/api/items"]["get"], "200")
    assert "Retry-After" in response_headers(paths["/api/auth/token"]["post"], "429")
    assert "Retry-After" in response_headers(paths["/api/items"]["get"], "503")
    assert "ETag" not in response_headers(paths["/api/users/me"]["get"], "200")


# --- ETags: where the declaration says -----------------------------------------------------


def answered(operation: dict[str, Any], status: str) -> str | None:
    """The model a response's JSON body is, by its component's name (None: no such body)."""
    content = operation["responses"][status].get("content", {})
    reference = content.get("application/json", {}).get("schema", {}).get("$ref")
    return reference.rpartition("/")[2] if reference else None


def versioned_models() -> set[str]:
    """The service's models declared `VersionedOutput` (not the ones tests declare)."""
    found: set[str] = set()
    pending = list(VersionedOutput.__subclasses__())
    while pending:
        model = pending.pop()
        pending.extend(model.__subclasses__())
        if model.__module__.startswith("backoffice."):
            found.add(model.__name__)
    return found


def test_what_views_comparing_etags_answer_is_declared_versioned(spec):
    """An ETag is sent to be compared: a view that honours `If-None-Match` documents 304 and
    one that honours `If-Match` documents 412. What such a view answers must be declared
    `VersionedOutput` (else the document would not show its `ETag`), and every model declared
    so is answered by such a view (else it is marked for nothing)."""
    compared = {
        answered(operation, status)
        for _, _, operation in operations(spec)
        if {"304", "412"} & set(operation["responses"])
        for status in operation["responses"]
        if status.startswith("2")
    } - {None}
    assert compared == versioned_models()
    assert {"ItemOut", "OrderOut", "TodoOut"} <= compared  # not vacuous


def test_etag_is_documented_on_every_answer_of_a_versioned_model_and_only_there(spec):
    versioned = versioned_models()
    for path, method, operation in operations(spec):
        for status in operation["responses"]:
            if status.startswith("2"):
                documented = "ETag" in response_headers(operation, status)
                assert documented == (answered(operation, status) in versioned), (path, method)
    assert VERSIONED_MARK not in json.dumps(spec)


class GadgetOut(VersionedOutput):
    """A resource of this test's own, declared versioned as ItemOut is."""

    id: uuid.UUID


def test_a_model_newly_declared_versioned_has_its_etag_documented(
    make_app: Callable[..., APIFlask], database_url: str
):
    gadgets = APIBlueprint("gadgets", __name__)

    @gadgets.get("/gadgets/<uuid:gadget_id>")
    @gadgets.output(GadgetOut)
    def get_gadget(gadget_id: uuid.UUID) -> Any:
        """Get one gadget"""
        return {"id": gadget_id}

    app = make_app(DATABASE_URL=database_url)
    app.register_blueprint(gadgets, url_prefix="/api")
    spec = app.test_client().get("/openapi.json").json
    assert "ETag" in response_headers(spec["paths"]["/api/gadgets/{gadget_id}"]["get"], "200")
    assert VERSIONED_MARK not in spec["components"]["schemas"]["GadgetOut"]


# --- a client generated from the document works -----------------------------------------


@pytest.fixture(scope="module")
def generated_client(tmp_path_factory: pytest.TempPathFactory, spec_file: Path) -> Any:
    """A Python client generated by openapi-python-client from the served document."""
    out = tmp_path_factory.mktemp("client")
    generator = Path(sys.executable).parent / "openapi-python-client"
    command = [generator, "generate", "--path", spec_file, "--meta", "none"]
    subprocess.run(  # noqa: S603 - our own generator, our own document
        [*command, "--output-path", out / "backoffice_client"],
        cwd=out,
        check=True,
        capture_output=True,
        timeout=120,
    )
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module("backoffice_client")
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m.split(".")[0] == "backoffice_client"]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory: pytest.TempPathFactory, app) -> Path:
    path = tmp_path_factory.mktemp("spec") / "openapi.json"
    path.write_text(json.dumps(app.test_client().get("/openapi.json").json))
    return path


def test_a_generated_client_creates_reads_and_lists_an_item(app, admin: Account, generated_client):
    from_module = importlib.import_module
    api = "backoffice_client.api.items"
    create_item = from_module(f"{api}.create_item")
    get_item = from_module(f"{api}.get_item")
    list_items = from_module(f"{api}.list_items")
    models = from_module("backoffice_client.models")

    token = login(app.test_client(), admin)["access_token"]
    client = generated_client.AuthenticatedClient(
        base_url="http://localhost",
        token=token,
        httpx_args={"transport": httpx.WSGITransport(app=app)},
    )
    with client:
        created = create_item.sync_detailed(
            client=client,
            body=models.ItemIn(name="Generated bolt", quantity=7),
            idempotency_key="generated-client-1",
        )
        assert created.status_code == 201
        item = created.parsed
        assert isinstance(item, models.ItemOut)
        assert (item.name, item.quantity) == ("Generated bolt", 7)
        assert created.headers["Location"].endswith(f"/api/items/{item.id}")

        fetched = get_item.sync(client=client, item_id=item.id)
        assert isinstance(fetched, models.ItemOut)
        assert fetched.id == item.id

        page = list_items.sync(client=client, limit=100)
        assert isinstance(page, models.ItemList)
        assert item.id in [listed.id for listed in page.data]

        missing = get_item.sync_detailed(client=client, item_id=fetched.id.__class__(int=1))
        assert missing.status_code == 404
        assert isinstance(missing.parsed, models.Problem)
        assert missing.parsed.status == 404


def test_the_user_patch_says_current_password_comes_with_a_password_or_an_email(spec):
    """What the users service checks (422 otherwise), so Schemathesis' valid patches meet it."""
    patch = spec["components"]["schemas"]["UserPatch"]
    assert patch["dependentSchemas"] == {
        "current_password": {"anyOf": [{"required": ["password"]}, {"required": ["email"]}]}
    }
    assert "dependentRequired" not in patch


# --- what /docs shows a person ----------------------------------------------------------


def test_the_description_names_every_capability(spec):
    description = spec["info"]["description"]
    for capability in (
        "Inventory",
        "Orders",
        "Todos",
        "Users and roles",
        "JWT",
        "API keys",
        "Webhook gateway",
        "Background jobs",
        "Tools and chat",
        "Health",
        "Metrics",
    ):
        assert f"{capability}" in description, capability
    assert "POST /api/auth/token" in description  # the prefix filled in
    assert "{prefix}" not in description


def _component(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rpartition("/")[2]]
    return schema


def _closed(schema: dict[str, Any]) -> bool:
    """Values Swagger UI shows as they are: an enum, a constant, a boolean."""
    variants = [schema, *schema.get("anyOf", []), *schema.get("oneOf", [])]
    return any("enum" in v or "const" in v or v.get("type") == "boolean" for v in variants)


def _body_properties(
    spec: dict[str, Any],
) -> Iterator[tuple[str, dict[str, Any], str | None, dict[str, Any] | None]]:
    """(object, its schema, property name, its schema) of every request body's objects,
    nested ones included; an object with an example of its own comes with name None."""
    pending = [
        media["schema"]
        for _, _, operation in operations(spec)
        for media in operation.get("requestBody", {}).get("content", {}).values()
    ]
    seen: set[int] = set()
    while pending:
        schema = _component(spec, pending.pop())
        if id(schema) in seen:
            continue
        seen.add(id(schema))
        pending.extend(schema.get("oneOf", []) + schema.get("anyOf", []))
        if "items" in schema:
            pending.append(schema["items"])
        title = schema.get("title", schema.get("description", "?"))
        if "examples" in schema and "properties" in schema:
            yield title, schema, None, None
            continue
        for name, prop in schema.get("properties", {}).items():
            pending.append(prop)
            yield title, schema, name, prop


def _examples(schema: dict[str, Any]) -> list[tuple[dict[str, Any], Any]]:
    """(schema, example) for the examples of `schema` and of its variants (a nullable
    field's is on its non-null variant, which Swagger UI takes)."""
    variants = [schema, *schema.get("anyOf", []), *schema.get("oneOf", [])]
    return [
        (v, e)
        for v in variants
        for e in v.get("examples", [v["example"]] if "example" in v else [])
    ]


def test_every_request_body_property_has_an_example_or_a_meaningful_default(spec):
    """Swagger UI's "Try it out" starts from these: "Widget", not "string"."""
    bare = []
    for title, _, name, prop in _body_properties(spec):
        if name is None or prop is None:
            continue
        nested = _component(spec, prop)
        objects = "properties" in nested or "$ref" in prop.get("items", {})
        meaningful = prop.get("default") is not None or _closed(nested) or objects
        if not _examples(prop) and not meaningful:
            bare.append(f"{title}.{name}")
    assert bare == []


def test_the_examples_are_valid_input(spec):
    """An example the API would refuse would teach a 422 (and Schemathesis sends them)."""
    checked = 0
    for _, schema, name, prop in _body_properties(spec):
        for target, example in _examples(schema if name is None else prop or {}):
            Draft202012Validator(target).validate(example)
            checked += 1
    assert checked >= 20, checked
    token = spec["components"]["schemas"]["TokenRequest"]["examples"]
    assert token == [{"email": "ada@lovelace.dev", "password": "correct horse battery staple"}]


def test_the_authorize_dialog_offers_only_schemes_the_api_accepts(spec, app, admin: Account):
    """Each scheme in the Authorize dialog is one some operation takes, and a credential of
    each kind, sent as that scheme says, is taken: a token, a key, a refresh token, and the
    OAuth2 password form as Swagger UI posts it (with its empty client credentials)."""
    schemes = spec["components"]["securitySchemes"]
    required = {
        name
        for _, _, operation in operations(spec)
        for requirement in operation.get("security", [])
        for name in requirement
    }
    assert (
        set(schemes)
        == required
        == {
            "BearerAuth",
            "ApiKeyAuth",
            "RefreshToken",
            "OAuth2PasswordFlow",
        }
    )
    client = app.test_client()
    flow = schemes["OAuth2PasswordFlow"]["flows"]["password"]
    form = {"grant_type": "password", "username": admin.email, "password": admin.password}
    swagger_basic = {"Authorization": "Basic Og=="}  # btoa(":"), no client id or secret
    issued = client.post(flow["tokenUrl"], data=form, headers=swagger_basic)
    assert issued.status_code == 200, issued.json
    assert issued.json["token_type"] == "bearer"
    assert set(flow["scopes"]) == {"items", "jobs", "orders", "todos", "tools", "users", "admin"}

    bearer = {"Authorization": f"Bearer {issued.json['access_token']}"}
    assert client.get("/api/users/me", headers=bearer).status_code == 200
    key = client.post("/api/auth/api-keys", json={"name": "Dialog check"}, headers=bearer)
    assert key.status_code == 201
    me = client.get("/api/users/me", headers={schemes["ApiKeyAuth"]["name"]: key.json["key"]})
    assert me.status_code == 200
    assert me.json["email"] == admin.email
    refresh = {"Authorization": f"Bearer {issued.json['refresh_token']}"}
    assert client.post("/api/auth/refresh", headers=refresh).status_code == 200
    assert "POST /api/auth/refresh" in schemes["RefreshToken"]["description"]
