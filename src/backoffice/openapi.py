"""The OpenAPI document's shared parts, and the docs page's assets served offline."""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any

import flask_swagger_ui
from apiflask import APIFlask
from flask import Blueprint

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


def _spec_processor(prefix: str) -> Callable[[dict[str, Any] | str], dict[str, Any] | str]:
    """APIFlask keeps one spec processor: this one applies every adjustment above."""

    def process(spec: dict[str, Any] | str) -> dict[str, Any] | str:
        if isinstance(spec, dict):
            _problem_media_type(spec)
            _password_flow(spec, prefix)
        return spec

    return process


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
        INFO={
            "description": "Back-office REST API: inventory, people and roles, per-person todos."
        },
    )
    app.spec_processor(_spec_processor(app.config["API_PREFIX"]))
