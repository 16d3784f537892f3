"""The OpenAPI document's shared parts, and the docs page's assets served offline."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import wraps
from http import HTTPStatus
from pathlib import Path
from typing import Any

import flask_swagger_ui
from apiflask import APIFlask
from flask import Blueprint, Response, current_app, request

from backoffice.auth.principal import SCOPE_DESCRIPTIONS
from backoffice.errors import PROBLEM_MIMETYPE
from backoffice.schemas import OutputModel

#: Swagger UI's scripts and styles, shipped inside the flask-swagger-ui wheel.
SWAGGER_UI_DIST = Path(flask_swagger_ui.__file__).parent / "dist"


class FieldError(OutputModel):
    field: str
    message: str


class Problem(OutputModel):
    """An RFC 9457 problem: the body of every error response."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    request_id: str | None
    errors: list[FieldError] | None = None


def problem_schema() -> dict[str, Any]:
    """`Problem` as a self-contained JSON schema (APIFlask takes error schemas as dicts)."""
    schema = Problem.model_json_schema(ref_template="{model}")
    definitions = schema.pop("$defs", {})
    errors = schema["properties"]["errors"]["anyOf"][0]
    errors["items"] = definitions[errors["items"].pop("$ref")]
    return schema


def problem_responses(*statuses: int, status_304: bool = False) -> dict[int, str]:
    """`@bp.doc(responses=...)` entries for the errors a view can answer."""
    responses = {status: HTTPStatus(status).phrase for status in statuses}
    if status_304:
        responses[304] = "Not modified: the If-None-Match ETag is current"
    return responses


OAUTH2_SCHEME = "OAuth2PasswordFlow"

#: What a conditional write (PUT, PATCH) can answer besides its result.
PRECONDITION_RESPONSES = problem_responses(400, 401, 403, 404, 409, 412, 413, 415, 422)


def _problem_media_type(spec: dict[str, Any]) -> None:
    """Errors are served as application/problem+json; say so in the document."""
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            for _status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                schema = content.get("application/json", {}).get("schema", {})
                if str(schema.get("$ref", "")).endswith("/HTTPError"):
                    content[PROBLEM_MIMETYPE] = content.pop("application/json")


def _password_flow(spec: dict[str, Any], prefix: str) -> None:
    """Offer OAuth2's password flow beside the bearer scheme, so the docs page's Authorize
    button can log in with an email and password (POST {prefix}/auth/token takes the form).
    """
    schemes = spec.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes[OAUTH2_SCHEME] = {
        "type": "oauth2",
        "description": "Log in with your email (as username) and password.",
        "flows": {"password": {"tokenUrl": f"{prefix}/auth/token", "scopes": SCOPE_DESCRIPTIONS}},
    }
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            for requirement in list(operation.get("security", [])):
                if "BearerAuth" in requirement:
                    operation["security"].append({OAUTH2_SCHEME: requirement["BearerAuth"]})


#: `<uuid:name>` (or `<uuid(...):name>`) in a URL rule: a path parameter that must be a UUID.
_UUID_SEGMENT = re.compile(r"<uuid(?:\([^)]*\))?:(\w+)>")
_ANY_SEGMENT = re.compile(r"<(?:[^:<>]+:)?(\w+)>")


def uuid_parameters(rules: Iterable[str]) -> dict[str, set[str]]:
    """For each OpenAPI path (`/api/items/{item_id}`), the names of its `<uuid:...>` segments.

    APIFlask documents every converter's parameter as a plain string; ours refuse anything
    but a UUID (400, `conventions.StrictUUIDConverter`), so the document must say so.
    """
    found: dict[str, set[str]] = {}
    for rule in rules:
        names = set(_UUID_SEGMENT.findall(rule))
        if names:
            found.setdefault(_ANY_SEGMENT.sub(r"{\1}", rule), set()).update(names)
    return found


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """`X | None` as a query parameter: a query string cannot send null, only leave it out."""
    variants = schema.get("anyOf")
    if not variants or {"type": "null"} not in variants:
        return schema
    rest = [variant for variant in variants if variant != {"type": "null"}]
    narrowed = {key: value for key, value in schema.items() if key not in {"anyOf", "default"}}
    return {**narrowed, **rest[0]} if len(rest) == 1 else {**narrowed, "anyOf": rest}


def _exact_parameters(spec: dict[str, Any], uuids: dict[str, set[str]]) -> None:
    """UUID path parameters get `format: uuid`; optional query parameters lose `null`."""
    for path, operations in spec.get("paths", {}).items():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] in uuids.get(path, ()):
                    parameter["schema"] = {"type": "string", "format": "uuid"}
                elif parameter["in"] == "query":
                    parameter["schema"] = _without_null(parameter["schema"])


#: What the shared layers (`conventions`, auth, `dependencies`) can answer for any view.
UNAVAILABLE = "A dependency (the database, a store, the broker) does not answer: retry after "
UNAVAILABLE += "`Retry-After`"


def _shared_answers(spec: dict[str, Any]) -> None:
    """Document the answers every view inherits, so none is missing from an operation:

    - a JSON body is required (400 without one, 413 too long, 415 another type, 422 invalid);
    - a UUID path parameter that is not one is 400;
    - credentials: 401 when bad (even where they are optional), 403 without a scope the
      operation needs;
    - 503 when a dependency is down, for every operation but liveness (no I/O) and the
      service index.
    """
    error = {"$ref": "#/components/schemas/HTTPError"}
    for path, operations in spec.get("paths", {}).items():
        for operation in operations.values():
            statuses: set[int] = set()
            if "requestBody" in operation:
                operation["requestBody"]["required"] = True
                statuses |= {400, 413, 415, 422}
            if any(parameter["in"] == "path" for parameter in operation.get("parameters", [])):
                statuses.add(400)
            security = operation.get("security", [])
            if security:
                statuses.add(401)
            if any(scopes for requirement in security for scopes in requirement.values()):
                statuses.add(403)
            if path not in {"/", "/health"}:
                statuses.add(503)
            responses = operation.setdefault("responses", {})
            for status in sorted(statuses):
                description = UNAVAILABLE if status == 503 else HTTPStatus(status).phrase
                responses.setdefault(
                    str(status),
                    {
                        "description": description,
                        "content": {"application/json": {"schema": error}},
                    },
                )


#: `@bp.doc(extensions=...)` marks: the view's credentials are optional (anonymous allowed).
OPTIONAL_AUTH = {"x-optional-auth": True}
#: `@bp.doc(extensions=...)` marks: the view reads a raw JSON object itself (no schema).
JSON_OBJECT_BODY = {"x-json-object-body": True}


def _view_marks(spec: dict[str, Any]) -> None:
    """Turn the marks above into OpenAPI: an empty security requirement (anyone may call),
    a required request body of any JSON object."""
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            if operation.pop("x-optional-auth", False):
                operation.setdefault("security", []).append({})
            if operation.pop("x-json-object-body", False):
                operation["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }


def _spec_processor(app: APIFlask) -> Callable[[dict[str, Any] | str], dict[str, Any] | str]:
    """APIFlask keeps one spec processor: this one applies every adjustment above."""
    prefix = app.config["API_PREFIX"]

    def process(spec: dict[str, Any] | str) -> dict[str, Any] | str:
        if isinstance(spec, dict):
            _view_marks(spec)
            _exact_parameters(spec, uuid_parameters(rule.rule for rule in app.url_map.iter_rules()))
            _shared_answers(spec)
            _problem_media_type(spec)
            _password_flow(spec, prefix)
        return spec

    return process


def servers_of_this_request(view: Callable[..., Any]) -> Callable[..., Response]:
    """The document's `servers` is the address this request reached, port included.

    APIFlask's own (`AUTO_SERVERS`) is the address of the first request it served, kept
    with the cached document for every later one: a health check on 127.0.0.1:5000 would
    send every "Try it out" of `/docs` behind a proxy there. The address is the trusted
    `Host` (TRUSTED_HOSTS), or what the trusted proxies forwarded (PROXY_FIX_X_*).
    """

    @wraps(view)
    def spec_view(*args: Any, **kwargs: Any) -> Response:
        response = current_app.make_response(view(*args, **kwargs))
        spec = response.get_json()
        spec["servers"] = [{"url": request.url_root.rstrip("/")}]
        response.set_data(current_app.json.dumps(spec))
        return response

    return spec_view


def init_openapi(app: APIFlask) -> None:
    assets = Blueprint(
        "docs_assets", __name__, static_folder=str(SWAGGER_UI_DIST), static_url_path="/docs/assets"
    )
    app.register_blueprint(assets)
    app.config.update(
        SWAGGER_UI_CSS="/docs/assets/swagger-ui.css",
        SWAGGER_UI_BUNDLE_JS="/docs/assets/swagger-ui-bundle.js",
        SWAGGER_UI_STANDALONE_PRESET_JS="/docs/assets/swagger-ui-standalone-preset.js",
        DOCS_FAVICON="/docs/assets/favicon-32x32.png",
        HTTP_ERROR_SCHEMA=problem_schema(),
        AUTO_VALIDATION_ERROR_RESPONSE=False,
        AUTO_SERVERS=False,
        SPEC_DECORATORS=[servers_of_this_request],
        INFO={
            "description": "Back-office REST API: inventory, people and roles, per-person todos."
        },
    )
    app.spec_processor(_spec_processor(app))
