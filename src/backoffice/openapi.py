"""The OpenAPI document's shared parts, and the docs page's assets served offline."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import wraps
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

import flask_swagger_ui
import orjson
from apiflask import APIFlask
from flask import Blueprint, Response, current_app, request

from backoffice.errors import PROBLEM_MIMETYPE
from backoffice.idempotency import KEY_PATTERN
from backoffice.principal import SCOPE_DESCRIPTIONS
from backoffice.schemas import VERSIONED_MARK, OutputModel

if TYPE_CHECKING:
    from pydantic import BaseModel

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


#: What `described_response` leaves in a response's schema: the component it is to become.
COMPONENT_MARK = "x-component"


def described_response(
    description: str, model: type[BaseModel], media_type: str = "application/json"
) -> dict[str, Any]:
    """A `@bp.doc(responses=...)` entry whose body is `model` (a component of its name):
    an answer besides the view's own output (a redelivery's 200), or a problem with more
    fields than `Problem` (an order's 409 `shortages`: give `PROBLEM_MIMETYPE`)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema[COMPONENT_MARK] = model.__name__
    return {"description": description, "content": {media_type: {"schema": schema}}}


def _described_components(spec: dict[str, Any]) -> None:
    """Turn the schemas `described_response` marked into components (a model the views
    already answer keeps APIFlask's), and their bodies into references to them."""
    components = spec.setdefault("components", {}).setdefault("schemas", {})
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                for media in response.get("content", {}).values():
                    name = media.get("schema", {}).pop(COMPONENT_MARK, None)
                    if name is None:
                        continue
                    schema = media["schema"]
                    for nested, definition in schema.pop("$defs", {}).items():
                        components.setdefault(nested, definition)
                    components.setdefault(name, schema)
                    media["schema"] = {"$ref": f"#/components/schemas/{name}"}


def _one_body_media_type(spec: dict[str, Any]) -> None:
    """A body accepted as JSON and as a form (the token's: the OAuth2 password form is what
    the docs page's Authorize button posts) is documented as JSON only, the form in the
    operation's description. Generators cannot take one model as two media types:
    openapi-python-client writes a module that fails to import (`NameError: Unset`)."""
    form = "application/x-www-form-urlencoded"
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            content = operation.get("requestBody", {}).get("content", {})
            if form in content and "application/json" in content:
                del content[form]
                operation["description"] = (
                    operation.get("description", "")
                    + "\n\nThe same fields are accepted as a form (`"
                    + form
                    + "`, `username` for `email`): the OAuth2 password flow."
                ).strip()


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


def _security_descriptions(spec: dict[str, Any], prefix: str) -> None:
    """The schemes' descriptions say where to get credentials, with the real prefix (so
    does the API's description)."""
    info = spec.get("info", {})
    info["description"] = info.get("description", "").replace("{prefix}", prefix)
    for scheme in spec.get("components", {}).get("securitySchemes", {}).values():
        if "description" in scheme:
            scheme["description"] = scheme["description"].replace("{prefix}", prefix)


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


def json_object_body(schema: dict[str, Any]) -> dict[str, Any]:
    """`@bp.doc(extensions=...)` mark: the view reads its JSON object body itself (no
    pydantic model); `schema` is what it accepts."""
    return {"x-json-object-body": schema}


def request_headers(descriptions: dict[str, str]) -> dict[str, Any]:
    """`@bp.doc(extensions=...)` mark: the view reads these optional headers itself (a
    webhook's signature); `descriptions` by name."""
    return {"x-request-headers": descriptions}


def _view_marks(spec: dict[str, Any]) -> None:
    """Turn the marks above into OpenAPI: an empty security requirement (anyone may call),
    a required request body of the JSON object the view reads, the headers it reads."""
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            for name, description in operation.pop("x-request-headers", {}).items():
                operation.setdefault("parameters", []).append(
                    {
                        "name": name,
                        "in": "header",
                        "required": False,
                        "description": description,
                        "schema": {"type": "string"},
                    }
                )
            if operation.pop("x-optional-auth", False):
                operation.setdefault("security", []).append({})
            body = operation.pop("x-json-object-body", None)
            if body is not None:
                operation["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": body}},
                }


# --- operation ids, components and headers --------------------------------------------


def _views(app: APIFlask) -> dict[tuple[str, str], Callable[..., Any]]:
    """(OpenAPI path, method) → the callable serving it (a MethodView's method)."""
    views: dict[tuple[str, str], Callable[..., Any]] = {}
    for rule in app.url_map.iter_rules():
        path = _ANY_SEGMENT.sub(r"{\1}", rule.rule)
        function = app.view_functions[rule.endpoint]
        view_class = getattr(function, "view_class", None)
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            view = getattr(view_class, method.lower()) if view_class else function
            views[(path, method.lower())] = view
    return views


def _marked(view: Callable[..., Any] | None, mark: str) -> bool:
    """Whether `view`, or a function it wraps, carries `mark`."""
    while view is not None:
        if getattr(view, mark, False):
            return True
        view = getattr(view, "__wrapped__", None)
    return False


def _operation_ids(spec: dict[str, Any], views: dict[tuple[str, str], Callable[..., Any]]) -> None:
    """Every operation gets a stable id, its view's name (`create_item`), unless it names
    one itself (`@bp.doc(operation_id=...)`, as a MethodView's methods do)."""
    for path, operations in spec.get("paths", {}).items():
        for method, operation in operations.items():
            view = views.get((path, method))
            if "operationId" not in operation and view is not None:
                operation["operationId"] = view.__name__


def _unqualified(spec: dict[str, Any]) -> None:
    """One component per model: APIFlask names a model nested in another `Outer.Inner`
    (so `ItemOut` appears again as `ItemList.ItemOut`); every copy of the same schema
    becomes plain `Inner`, wherever it is referred to (a discriminator's mapping too).
    Two different models of one name keep their qualified names.
    Repeated until nothing changes: copies that differ only by the names of the copies they
    refer to become equal once those are renamed.
    """
    while _unqualify_once(spec):
        pass


def _unqualify_once(spec: dict[str, Any]) -> bool:
    schemas: dict[str, Any] = spec.get("components", {}).get("schemas", {})
    by_name: dict[str, list[str]] = {}
    for name in schemas:
        by_name.setdefault(name.rpartition(".")[2], []).append(name)
    renames: dict[str, str] = {}
    for short, names in by_name.items():
        if len({orjson.dumps(schemas[name], option=orjson.OPT_SORT_KEYS) for name in names}) == 1:
            renames.update((name, short) for name in names if name != short)
    if not renames:
        return False
    for old, new in renames.items():
        schemas.setdefault(new, schemas[old])
        del schemas[old]
    prefix = "#/components/schemas/"
    pending: list[Any] = [spec]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            reference = node.get("$ref")
            if isinstance(reference, str) and reference[len(prefix) :] in renames:
                node["$ref"] = prefix + renames[reference[len(prefix) :]]
            mapping = node.get("discriminator", {}).get("mapping", {})
            for value, target in mapping.items():  # references too, though not `$ref`
                if target[len(prefix) :] in renames:
                    mapping[value] = prefix + renames[target[len(prefix) :]]
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return True


def _unique_tags(spec: dict[str, Any]) -> None:
    """Two blueprints may share a tag (the service's root and readiness): list it once."""
    seen: set[str] = set()
    tags = []
    for tag in spec.get("tags", []):
        if tag["name"] not in seen:
            seen.add(tag["name"])
            tags.append(tag)
    spec["tags"] = tags


def _header(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "schema": schema or {"type": "string"}}


IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Retry safely: a retry with the same key and body gets the first answer "
    "again (with `Idempotent-Replayed: true`), never a second resource; the same key with "
    "another body is 422, while the first is still running 409.",
    "schema": {"type": "string", "pattern": KEY_PATTERN.pattern},
}
IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "description": "The ETag you last read: the change is made only if it is still current "
    "(412 otherwise). `*` only asks that the resource exist.",
    "schema": {"type": "string"},
}
IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "description": "The ETag you hold: 304 with no body while it is current.",
    "schema": {"type": "string"},
}


def _versioned(spec: dict[str, Any]) -> set[str]:
    """The components of models served with the `ETag` of the version they show: those
    declared `schemas.VersionedOutput`, whose mark is taken out of the document here."""
    schemas: dict[str, Any] = spec.get("components", {}).get("schemas", {})
    return {name for name, schema in schemas.items() if schema.pop(VERSIONED_MARK, False)}


def _headers(
    spec: dict[str, Any],
    views: dict[tuple[str, str], Callable[..., Any]],
    versioned: set[str],
) -> None:
    """The headers a client sends and reads, which no schema of a body shows:

    - `Idempotency-Key` on creating operations; `If-Match` where a write can answer 412,
      `If-None-Match` where a read can answer 304;
    - `ETag` with every versioned resource, `Location` with 201 and 202, `Link` with list
      pages, `Idempotent-Replayed` on replays, `Retry-After` with 429 and 503.
    """
    for path, operations in spec.get("paths", {}).items():
        for method, operation in operations.items():
            responses: dict[str, Any] = operation.get("responses", {})
            parameters: list[dict[str, Any]] = operation.setdefault("parameters", [])
            idempotent = _marked(views.get((path, method)), "takes_idempotency_key")
            if idempotent:
                parameters.append(IDEMPOTENCY_KEY)
            if "412" in responses:
                parameters.append(IF_MATCH)
            if "304" in responses:
                parameters.append(IF_NONE_MATCH)
                responses["304"].pop("content", None)  # a 304 never has a body
                responses["304"].setdefault("headers", {})["ETag"] = _header("The current ETag")
            if not parameters:
                del operation["parameters"]
            pages = any(parameter["name"] == "cursor" for parameter in parameters)
            for status, response in responses.items():
                headers = response.setdefault("headers", {})
                if status in {"429", "503"}:
                    headers["Retry-After"] = _header(
                        "Seconds to wait before trying again", {"type": "integer", "minimum": 0}
                    )
                if not status.startswith("2"):
                    continue
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                if str(schema.get("$ref", "")).rpartition("/")[2] in versioned:
                    headers["ETag"] = _header("This version's ETag, for If-Match/If-None-Match")
                if status in {"201", "202"}:
                    headers["Location"] = _header("Where the new resource (or job) is")
                if pages:
                    headers["Link"] = _header('`<...>; rel="next"` while there are more pages')
                if idempotent:
                    headers["Idempotent-Replayed"] = _header(
                        "`true` on an answer replayed for a retried Idempotency-Key",
                        {"type": "string", "enum": ["true"]},
                    )
            for response in responses.values():
                if not response.get("headers"):
                    response.pop("headers", None)


def _spec_processor(app: APIFlask) -> Callable[[dict[str, Any] | str], dict[str, Any] | str]:
    """APIFlask keeps one spec processor: this one applies every adjustment above."""
    prefix = app.config["API_PREFIX"]

    def process(spec: dict[str, Any] | str) -> dict[str, Any] | str:
        if isinstance(spec, dict):
            _view_marks(spec)
            _described_components(spec)
            _one_body_media_type(spec)
            _exact_parameters(spec, uuid_parameters(rule.rule for rule in app.url_map.iter_rules()))
            _shared_answers(spec)
            _problem_media_type(spec)
            _password_flow(spec, prefix)
            views = _views(app)
            _operation_ids(spec, views)
            _headers(spec, views, _versioned(spec))
            _unqualified(spec)
            _unique_tags(spec)
            _security_descriptions(spec, prefix)
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


#: The document's `info.description`: what the service does, one line per capability.
DESCRIPTION = """Back-office REST API of a small business.

- **Inventory**: items with stock counts; conditional reads and writes (`ETag`,
  `If-None-Match` answers 304, `If-Match` answers 412 when stale).
- **Orders**: stock taken all or none (409 with typed `shortages`), paid by a webhook
  event, cancelled or fulfilled.
- **Todos**: each person's own list.
- **Users and roles**: sign-up, your own account, and every account for admins (`member`,
  `admin`).
- **Auth**: JWT access and refresh tokens (`POST {prefix}/auth/token`), logout everywhere, and
  scoped API keys (`X-API-Key`) for programs.
- **Webhook gateway**: partners' events signed per Standard Webhooks, stored once,
  processed in the background, replayable by admins.
- **Background jobs**: start one (202), follow it, cancel it while queued, fetch its result.
- **Tools and chat**: text processing, division, and a chat gateway to an
  OpenAI-compatible model server (whole or streamed), with per-person usage.
- **Health**: liveness (`/health`) and readiness with each dependency (`{prefix}/health`).
- **Metrics**: Prometheus metrics of every process at `/metrics` (not part of this API).

Errors are RFC 9457 problems (`application/problem+json`). Creating operations take an
`Idempotency-Key`; lists are keyset pages (`next_cursor`, `Link`).
"""


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
        INFO={"description": DESCRIPTION},
    )
    app.spec_processor(_spec_processor(app))
