"""Settings, one profile per environment, every value overridable from the environment.

`load_settings(os.environ)` is what `create_app()` uses; tests call it with a dict of
their own so nothing leaks in from the machine running them. Every variable read
here is listed, with its default, in the README's configuration table.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, ClassVar

from limits import parse as parse_limit

#: The development key. It works on a laptop and is refused by production.
DEFAULT_SECRET_KEY = "dev-only-insecure-secret-key-change-me"  # noqa: S105 (refused in production)


class ConfigError(RuntimeError):
    """The environment asks for a configuration the service refuses to run with."""


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"not a boolean: {value!r}")


def _prefix(value: str) -> str:
    value = value.strip()
    if not value.startswith("/") or (value.endswith("/") and value != "/"):
        raise ConfigError(f"API_PREFIX must start with '/' and not end with one: {value!r}")
    return "" if value == "/" else value


def _registration(value: str) -> str:
    value = value.strip().lower()
    if value not in {"open", "admin"}:
        raise ConfigError(f"REGISTRATION must be 'open' or 'admin', not {value!r}")
    return value


def _secrets(value: str) -> dict[str, str]:
    try:
        secrets = json.loads(value or "{}")
    except ValueError:
        raise ConfigError("WEBHOOK_SECRETS must be a JSON object {source: secret}") from None
    if not isinstance(secrets, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in secrets.items()
    ):
        raise ConfigError("WEBHOOK_SECRETS must be a JSON object {source: secret}")
    return secrets


def _names(value: str) -> frozenset[str]:
    return frozenset(name.strip() for name in value.split(",") if name.strip())


def _llm_base_url(value: str) -> str:
    """The model server's root (`http://host:port`); a trailing `/v1` is accepted too."""
    url = value.strip().rstrip("/")
    url = url.removesuffix("/v1")
    if url and not url.startswith(("http://", "https://")):
        raise ConfigError(f"LLM_BASE_URL must be an http:// or https:// URL, not {value!r}")
    return url


def _otlp_endpoint(value: str) -> str:
    url = value.strip().rstrip("/")
    if url and not url.startswith(("http://", "https://")):
        raise ConfigError(
            f"OTEL_EXPORTER_OTLP_ENDPOINT must be an http:// or https:// URL, not {value!r}"
        )
    return url


def _hosts(value: str) -> list[str] | None:
    """Comma-separated host names (`.example.com` takes every subdomain); `*` for any."""
    if value.strip() == "*":
        return None
    return sorted(_names(value.lower()))


def normalize_database_url(url: str) -> str:
    """Point PostgreSQL URLs at psycopg 3, whatever spelling the platform hands us."""
    for scheme in ("postgres://", "postgresql://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


#: environment variable -> (config key, parser)
ENVIRONMENT: dict[str, tuple[str, Callable[[str], Any]]] = {
    "SECRET_KEY": ("SECRET_KEY", str),
    "DATABASE_URL": ("SQLALCHEMY_DATABASE_URI", normalize_database_url),
    "API_PREFIX": ("API_PREFIX", _prefix),
    "MAX_CONTENT_LENGTH": ("MAX_CONTENT_LENGTH", int),
    "LOG_LEVEL": ("LOG_LEVEL", lambda v: v.strip().upper()),
    "LOG_JSON": ("LOG_JSON", _bool),
    "DB_POOL_SIZE": ("DB_POOL_SIZE", int),
    "PROXY_FIX_X_FOR": ("PROXY_FIX_X_FOR", int),
    "PROXY_FIX_X_PROTO": ("PROXY_FIX_X_PROTO", int),
    "TRUSTED_HOSTS": ("TRUSTED_HOSTS", _hosts),
    "IDEMPOTENCY_TTL_SECONDS": ("IDEMPOTENCY_TTL_SECONDS", int),
    "INSTANCE_CONFIG": ("INSTANCE_CONFIG", _bool),
    "JWT_ACCESS_TOKEN_EXPIRES": ("JWT_ACCESS_TOKEN_EXPIRES", lambda v: timedelta(seconds=int(v))),
    "JWT_REFRESH_TOKEN_EXPIRES": ("JWT_REFRESH_TOKEN_EXPIRES", lambda v: timedelta(seconds=int(v))),
    "REGISTRATION": ("REGISTRATION", _registration),
    "LOGIN_RATE_LIMIT": ("LOGIN_RATE_LIMIT", str),
    "SIGNUP_RATE_LIMIT": ("SIGNUP_RATE_LIMIT", str),
    "RATELIMIT_STORAGE_URI": ("RATELIMIT_STORAGE_URI", str),
    "REDIS_URL": ("REDIS_URL", str),
    "PASSWORD_HASH_TIME_COST": ("PASSWORD_HASH_TIME_COST", int),
    "PASSWORD_HASH_MEMORY_COST": ("PASSWORD_HASH_MEMORY_COST", int),
    "PASSWORD_HASH_PARALLELISM": ("PASSWORD_HASH_PARALLELISM", int),
    "CELERY_BROKER_URL": ("CELERY_BROKER_URL", str),
    "WEBHOOK_SECRETS": ("WEBHOOK_SECRETS", _secrets),
    "WEBHOOK_UNSIGNED_SOURCES": ("WEBHOOK_UNSIGNED_SOURCES", _names),
    "JOB_LEASE_SECONDS": ("JOB_LEASE_SECONDS", int),
    "WEBHOOK_LEASE_SECONDS": ("WEBHOOK_LEASE_SECONDS", int),
    "RELAY_INTERVAL_SECONDS": ("RELAY_INTERVAL_SECONDS", float),
    "LLM_BASE_URL": ("LLM_BASE_URL", _llm_base_url),
    "LLM_API_KEY": ("LLM_API_KEY", str.strip),
    "LLM_MODEL": ("LLM_MODEL", str.strip),
    "LLM_TIMEOUT": ("LLM_TIMEOUT", float),
    "LLM_CONNECT_TIMEOUT": ("LLM_CONNECT_TIMEOUT", float),
    "CHAT_RATE_LIMIT": ("CHAT_RATE_LIMIT", str),
    "METRICS_TOKEN": ("METRICS_TOKEN", str.strip),
    "OTEL_EXPORTER_OTLP_ENDPOINT": ("OTEL_EXPORTER_OTLP_ENDPOINT", _otlp_endpoint),
}


class Config:
    """Defaults shared by every profile."""

    APP_ENV: ClassVar[str] = "development"

    SECRET_KEY = DEFAULT_SECRET_KEY
    #: None means "the SQLite file in instance/", resolved by create_app().
    SQLALCHEMY_DATABASE_URI: str | None = None
    API_PREFIX = "/api"
    #: Request bodies larger than this are refused with 413 before they are read.
    MAX_CONTENT_LENGTH = 1024 * 1024
    LOG_LEVEL = "INFO"
    LOG_JSON = True
    DB_POOL_SIZE = 10
    #: How many proxies in front of us may set X-Forwarded-For / -Proto (0: trust none).
    PROXY_FIX_X_FOR = 0
    PROXY_FIX_X_PROTO = 0
    #: The host names clients may reach us by (Flask checks `Host` against them: any other
    #: is 400), so links are never built from a forged one. None accepts any host.
    TRUSTED_HOSTS: list[str] | None = ["localhost", "127.0.0.1"]
    IDEMPOTENCY_TTL_SECONDS = 24 * 60 * 60
    #: Read instance/config.py for local overrides.
    INSTANCE_CONFIG = True
    TESTING = False
    DEBUG = False

    # Identity (users/, auth/)
    JWT_ACCESS_TOKEN_EXPIRES = timedelta(hours=1)
    JWT_REFRESH_TOKEN_EXPIRES = timedelta(days=14)
    JWT_ALGORITHM = "HS256"
    JWT_TOKEN_LOCATION = ["headers"]
    #: "open": anyone may sign up with POST /users; "admin": only admins create users.
    REGISTRATION = "open"
    #: Failed logins allowed per client IP before 429 (Flask-Limiter notation).
    LOGIN_RATE_LIMIT = "5 per minute"
    #: Sign-ups (and sign-ups finding the email taken) allowed per client IP; admins are exempt.
    SIGNUP_RATE_LIMIT = "10 per hour"
    RATELIMIT_STORAGE_URI = "memory://"
    RATELIMIT_STRATEGY = "fixed-window"
    RATELIMIT_HEADERS_ENABLED = True
    #: Where revoked tokens are kept: "" for the database, or a redis:// URL.
    REDIS_URL = ""
    # argon2id parameters (RFC 9106's second recommended option by default).
    PASSWORD_HASH_TIME_COST = 3
    PASSWORD_HASH_MEMORY_COST = 64 * 1024
    PASSWORD_HASH_PARALLELISM = 4

    # Background work (jobs/, the queue)
    #: "" means the embedded broker: a SQLite file in instance/ (kombu's SQLAlchemy transport).
    CELERY_BROKER_URL = ""
    #: A running job not heard from for this long is taken to have lost its worker.
    JOB_LEASE_SECONDS = 120
    #: How often the worker's relay looks for accepted work that is not in the queue.
    RELAY_INTERVAL_SECONDS = 5.0

    # Webhook gateway (webhooks/)
    #: {source: "whsec_..."}; a source listed here must sign every delivery.
    WEBHOOK_SECRETS: dict[str, str] = {}
    #: Sources allowed to deliver unsigned. Empty by default; development opens "default".
    WEBHOOK_UNSIGNED_SOURCES: frozenset[str] = frozenset()
    #: An event being processed and not heard from for this long has lost its worker.
    WEBHOOK_LEASE_SECONDS = 120

    # Tools (tools/): the chat gateway to an OpenAI-compatible model server
    #: The server's root, e.g. "http://127.0.0.1:8001"; "" leaves chat off (503).
    LLM_BASE_URL = ""
    #: Sent as `Authorization: Bearer ...` to the model server; never logged or echoed.
    LLM_API_KEY = ""
    #: The model every chat call asks for; "" leaves chat off (503).
    LLM_MODEL = ""
    #: Seconds to wait for the model server's next bytes (the answer, or a stream's next delta).
    LLM_TIMEOUT = 30.0
    #: Seconds to wait for a connection to the model server.
    LLM_CONNECT_TIMEOUT = 5.0
    #: Chat calls allowed per user (Flask-Limiter notation), in RATELIMIT_STORAGE_URI.
    CHAT_RATE_LIMIT = "20 per minute"

    # Metrics (metrics.py)
    #: The bearer token `GET /metrics` wants; "" leaves the endpoint off (404).
    METRICS_TOKEN = ""
    #: An OTLP/HTTP collector's root (spans go to {it}/v1/traces); "" leaves tracing off.
    OTEL_EXPORTER_OTLP_ENDPOINT = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> dict[str, Any]:
        """The profile's defaults, overridden by whatever `environ` sets, validated."""
        settings = {key: getattr(cls, key) for key in dir(cls) if key.isupper()}
        for variable, (key, parse) in ENVIRONMENT.items():
            if variable in environ:
                settings[key] = parse(environ[variable])
        cls.validate(settings)
        return settings

    @classmethod
    def validate(cls, settings: dict[str, Any]) -> None:
        """Refuse settings no profile can run with."""
        if settings["MAX_CONTENT_LENGTH"] <= 0:
            raise ConfigError("MAX_CONTENT_LENGTH must be positive")
        for lease in ("JOB_LEASE_SECONDS", "WEBHOOK_LEASE_SECONDS"):
            if settings[lease] <= 0:
                raise ConfigError(f"{lease} must be a positive number of seconds")
        for timeout in ("LLM_TIMEOUT", "LLM_CONNECT_TIMEOUT"):
            if not 0 < settings[timeout] <= 3600:
                raise ConfigError(f"{timeout} must be a number of seconds between 0 and 3600")
        if len(settings["LLM_MODEL"]) > 200:
            raise ConfigError("LLM_MODEL must be at most 200 characters")
        for limit in ("LOGIN_RATE_LIMIT", "SIGNUP_RATE_LIMIT", "CHAT_RATE_LIMIT"):
            try:
                parse_limit(settings[limit])
            except ValueError:
                raise ConfigError(f"{limit} must read like '5 per minute'") from None


class DevelopmentConfig(Config):
    APP_ENV = "development"
    LOG_JSON = False
    #: So a plain curl to POST {prefix}/webhook works on a laptop.
    WEBHOOK_UNSIGNED_SOURCES = frozenset({"default"})


class TestingConfig(Config):
    APP_ENV = "testing"
    TESTING = True
    INSTANCE_CONFIG = False
    # Cheap hashes keep the suite fast; still argon2id, and rehash-on-login is tested.
    PASSWORD_HASH_TIME_COST = 1
    PASSWORD_HASH_MEMORY_COST = 1024
    PASSWORD_HASH_PARALLELISM = 1


class ProductionConfig(Config):
    APP_ENV = "production"
    INSTANCE_CONFIG = False
    #: No default: the names a deployment is reached by are its own (see validate).
    TRUSTED_HOSTS = None

    @classmethod
    def validate(cls, settings: dict[str, Any]) -> None:
        super().validate(settings)
        secret = settings["SECRET_KEY"]
        if secret == DEFAULT_SECRET_KEY or len(secret) < 32:
            raise ConfigError(
                "production needs SECRET_KEY: a random value of 32 characters or more "
                '(python -c "import secrets; print(secrets.token_urlsafe(48))")'
            )
        if not settings["SQLALCHEMY_DATABASE_URI"]:
            raise ConfigError("production needs DATABASE_URL")
        if settings["METRICS_TOKEN"] and len(settings["METRICS_TOKEN"]) < 32:
            raise ConfigError(
                "METRICS_TOKEN must be a random value of 32 characters or more "
                '(python -c "import secrets; print(secrets.token_urlsafe(32))")'
            )
        if not settings["TRUSTED_HOSTS"]:
            raise ConfigError(
                "production needs TRUSTED_HOSTS: the host names clients reach the API by, "
                "comma-separated (e.g. api.example.com), and those health checks use"
            )


PROFILES: dict[str, type[Config]] = {
    profile.APP_ENV: profile for profile in (DevelopmentConfig, TestingConfig, ProductionConfig)
}


def load_settings(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The settings for the profile `APP_ENV` names (development by default)."""
    environ = os.environ if environ is None else environ
    name = environ.get("APP_ENV", "development").strip().lower()
    try:
        profile = PROFILES[name]
    except KeyError:
        raise ConfigError(f"APP_ENV must be one of {sorted(PROFILES)}, not {name!r}") from None
    settings = profile.from_env(environ)
    settings["APP_ENV"] = profile.APP_ENV
    return settings
