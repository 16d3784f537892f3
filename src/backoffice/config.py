"""Settings, one profile per environment, every value overridable from the environment.

`load_settings(os.environ)` is what `create_app()` uses; tests call it with a dict of
their own so nothing leaks in from the machine running them. Every variable read
here is listed, with its default, in the README's configuration table.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, ClassVar, NoReturn

from limits import parse as parse_limit
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

# Importing it registers `database://` among the rate-limit storages `limits` knows.
from backoffice.rate_limits import DatabaseStorage

#: The development key. It works on a laptop and is refused by production.
DEFAULT_SECRET_KEY = "dev-only-insecure-secret-key-change-me"  # noqa: S105 (refused in production)


#: The exit status of a refused configuration (a usage error, as for a bad option).
CONFIG_ERROR = 2


class ConfigError(RuntimeError):
    """The environment asks for a configuration the service refuses to run with.

    Its message is one line that names the variable: the entry points
    (`backoffice.startup`) print it as it is, without a traceback (`refuse`).
    """


def refuse(error: ConfigError) -> NoReturn:
    """Say what is wrong in one line on stderr and exit."""
    print(f"configuration error: {error}", file=sys.stderr, flush=True)
    raise SystemExit(CONFIG_ERROR)


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


def _sentry_dsn(value: str) -> str:
    """A Sentry DSN (`https://<public key>@<host>/<project>`), or "" for none. Not repeated
    in the refusal: it is a credential of sorts."""
    dsn = value.strip()
    if dsn and not (dsn.startswith(("http://", "https://")) and "@" in dsn):
        raise ConfigError("SENTRY_DSN must read like https://<key>@<host>/<project>, or be empty")
    return dsn


def _hosts(value: str) -> list[str] | None:
    """Comma-separated host names (`.example.com` takes every subdomain); `*` for any."""
    if value.strip() == "*":
        return None
    return sorted(_names(value.lower()))


#: `scheme://host[:port]`, what a browser sends as `Origin` (no path, no trailing slash).
_ORIGIN = re.compile(r"^https?://[a-z0-9.-]+(:[0-9]{1,5})?$")


def _origins(value: str) -> list[str]:
    """Comma-separated origins allowed to call the API from a browser; `*` for any."""
    origins = sorted(_names(value.lower()))
    if origins == ["*"]:
        return origins
    for origin in origins:
        if not _ORIGIN.match(origin):
            raise ConfigError(
                f"CORS_ORIGINS lists {origin!r}: each origin is scheme://host[:port], "
                "like https://app.example.com, with no path (or a lone * for any origin)"
            )
    return origins


def _days(variable: str) -> Callable[[str], int]:
    """A retention in whole days; 0 keeps forever."""

    def parse(value: str) -> int:
        try:
            days = int(value.strip())
        except ValueError:
            days = -1
        if not 0 <= days <= 36500:
            raise ConfigError(
                f"{variable} must be a whole number of days from 0 (keep forever) to 36500, "
                f"not {value!r}"
            )
        return days

    return parse


def _number(
    variable: str, kind: type[int] | type[float], low: float, high: float
) -> Callable[[str], Any]:
    """A number between `low` and `high`, refused with the variable's name otherwise."""

    def shown(bound: float) -> str:
        # A whole number in full: 2592000, not the 2.592e+06 that `:g` writes.
        return f"{bound:g}" if kind is float else f"{bound:.0f}"

    def parse(value: str) -> int | float:
        try:
            number = kind(value.strip())
        except ValueError:
            number = low - 1
        if not low <= number <= high:
            raise ConfigError(
                f"{variable} must be a number from {shown(low)} to {shown(high)}, not {value!r}"
            )
        return number

    return parse


def normalize_database_url(url: str) -> str:
    """Point PostgreSQL URLs at psycopg 3, whatever spelling the platform hands us."""
    for scheme in ("postgres://", "postgresql://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


#: How long an `Idempotency-Key` may be remembered, in seconds: at least a minute (a client
#: retries within that; at 0 or less a retry after the first answer would create a second
#: resource), at most 30 days (the records are kept that long, one per create).
MIN_IDEMPOTENCY_TTL, MAX_IDEMPOTENCY_TTL = 60, 30 * 24 * 60 * 60

#: environment variable -> (config key, parser)
ENVIRONMENT: dict[str, tuple[str, Callable[[str], Any]]] = {
    "SECRET_KEY": ("SECRET_KEY", str),
    "DATABASE_URL": ("SQLALCHEMY_DATABASE_URI", normalize_database_url),
    "API_PREFIX": ("API_PREFIX", _prefix),
    "MAX_CONTENT_LENGTH": ("MAX_CONTENT_LENGTH", int),
    "SERVER_THREADS": ("SERVER_THREADS", _number("SERVER_THREADS", int, 1, 256)),
    "BODY_READ_TIMEOUT": ("BODY_READ_TIMEOUT", _number("BODY_READ_TIMEOUT", float, 0.1, 600)),
    "LOG_LEVEL": ("LOG_LEVEL", lambda v: v.strip().upper()),
    "LOG_JSON": ("LOG_JSON", _bool),
    "DB_POOL_SIZE": ("DB_POOL_SIZE", int),
    "PROXY_FIX_X_FOR": ("PROXY_FIX_X_FOR", int),
    "PROXY_FIX_X_PROTO": ("PROXY_FIX_X_PROTO", int),
    "PROXY_FIX_X_HOST": ("PROXY_FIX_X_HOST", int),
    "PROXY_FIX_X_PORT": ("PROXY_FIX_X_PORT", int),
    "TRUSTED_HOSTS": ("TRUSTED_HOSTS", _hosts),
    "CORS_ORIGINS": ("CORS_ORIGINS", _origins),
    "CORS_ALLOW_CREDENTIALS": ("CORS_ALLOW_CREDENTIALS", _bool),
    "CORS_MAX_AGE": ("CORS_MAX_AGE", int),
    "HSTS_MAX_AGE": ("HSTS_MAX_AGE", int),
    "IDEMPOTENCY_TTL_SECONDS": (
        "IDEMPOTENCY_TTL_SECONDS",
        _number("IDEMPOTENCY_TTL_SECONDS", int, MIN_IDEMPOTENCY_TTL, MAX_IDEMPOTENCY_TTL),
    ),
    "INSTANCE_CONFIG": ("INSTANCE_CONFIG", _bool),
    "JWT_ACCESS_TOKEN_EXPIRES": ("JWT_ACCESS_TOKEN_EXPIRES", lambda v: timedelta(seconds=int(v))),
    "JWT_REFRESH_TOKEN_EXPIRES": ("JWT_REFRESH_TOKEN_EXPIRES", lambda v: timedelta(seconds=int(v))),
    "CONSOLE_SESSION_LIFETIME": (
        "CONSOLE_SESSION_LIFETIME",
        lambda v: timedelta(seconds=_number("CONSOLE_SESSION_LIFETIME", int, 60, 604_800)(v)),
    ),
    "CONSOLE_COOKIE_SECURE": ("CONSOLE_COOKIE_SECURE", _bool),
    "REGISTRATION": ("REGISTRATION", _registration),
    "API_KEYS_PER_USER": ("API_KEYS_PER_USER", _number("API_KEYS_PER_USER", int, 1, 10_000)),
    "LOGIN_RATE_LIMIT": ("LOGIN_RATE_LIMIT", str),
    "SIGNUP_RATE_LIMIT": ("SIGNUP_RATE_LIMIT", str),
    "RATELIMIT_STORAGE_URI": ("RATELIMIT_STORAGE_URI", str),
    "AUTH_CACHE": ("AUTH_CACHE", _bool),
    "AUTH_CACHE_MAX_AGE": ("AUTH_CACHE_MAX_AGE", _number("AUTH_CACHE_MAX_AGE", float, 0.1, 300)),
    "PASSWORD_HASH_TIME_COST": ("PASSWORD_HASH_TIME_COST", int),
    "PASSWORD_HASH_MEMORY_COST": ("PASSWORD_HASH_MEMORY_COST", int),
    "PASSWORD_HASH_PARALLELISM": ("PASSWORD_HASH_PARALLELISM", int),
    "CELERY_BROKER_URL": ("CELERY_BROKER_URL", str),
    "WEBHOOK_SECRETS": ("WEBHOOK_SECRETS", _secrets),
    "WEBHOOK_UNSIGNED_SOURCES": ("WEBHOOK_UNSIGNED_SOURCES", _names),
    "JOB_LEASE_SECONDS": ("JOB_LEASE_SECONDS", int),
    "WEBHOOK_LEASE_SECONDS": ("WEBHOOK_LEASE_SECONDS", int),
    "RELAY_INTERVAL_SECONDS": ("RELAY_INTERVAL_SECONDS", float),
    "RESEND_UNCLAIMED_SECONDS": (
        "RESEND_UNCLAIMED_SECONDS",
        _number("RESEND_UNCLAIMED_SECONDS", float, 1, 3600),
    ),
    "JOB_RETENTION_DAYS": ("JOB_RETENTION_DAYS", _days("JOB_RETENTION_DAYS")),
    "WEBHOOK_RETENTION_DAYS": ("WEBHOOK_RETENTION_DAYS", _days("WEBHOOK_RETENTION_DAYS")),
    "WEBHOOK_FAILED_RETENTION_DAYS": (
        "WEBHOOK_FAILED_RETENTION_DAYS",
        _days("WEBHOOK_FAILED_RETENTION_DAYS"),
    ),
    "PRUNE_INTERVAL_SECONDS": (
        "PRUNE_INTERVAL_SECONDS",
        _number("PRUNE_INTERVAL_SECONDS", float, 0, 86400),
    ),
    "ACTIVITY_INTERVAL_SECONDS": (
        "ACTIVITY_INTERVAL_SECONDS",
        _number("ACTIVITY_INTERVAL_SECONDS", float, 0, 3600),
    ),
    "PRUNE_BATCH_SIZE": ("PRUNE_BATCH_SIZE", _number("PRUNE_BATCH_SIZE", int, 1, 100_000)),
    "LLM_BASE_URL": ("LLM_BASE_URL", _llm_base_url),
    "LLM_API_KEY": ("LLM_API_KEY", str.strip),
    "LLM_MODEL": ("LLM_MODEL", str.strip),
    "LLM_TIMEOUT": ("LLM_TIMEOUT", float),
    "LLM_CONNECT_TIMEOUT": ("LLM_CONNECT_TIMEOUT", float),
    "LLM_DEADLINE": ("LLM_DEADLINE", _number("LLM_DEADLINE", float, 1, 86400)),
    "CHAT_RATE_LIMIT": ("CHAT_RATE_LIMIT", str),
    "CHAT_CALLS_PER_PROCESS": (
        "CHAT_CALLS_PER_PROCESS",
        _number("CHAT_CALLS_PER_PROCESS", int, 1, 255),
    ),
    "CHAT_CALLS_PER_USER": ("CHAT_CALLS_PER_USER", _number("CHAT_CALLS_PER_USER", int, 1, 100)),
    "METRICS_TOKEN": ("METRICS_TOKEN", str.strip),
    "OTEL_EXPORTER_OTLP_ENDPOINT": ("OTEL_EXPORTER_OTLP_ENDPOINT", _otlp_endpoint),
    "SENTRY_DSN": ("SENTRY_DSN", _sentry_dsn),
    "SENTRY_ENVIRONMENT": ("SENTRY_ENVIRONMENT", str.strip),
    "SENTRY_TRACES_SAMPLE_RATE": (
        "SENTRY_TRACES_SAMPLE_RATE",
        _number("SENTRY_TRACES_SAMPLE_RATE", float, 0, 1),
    ),
}
#: Variables no longer read, and the one line that refuses a process started with one
#: set: an operator who set it is told, not silently ignored.
RETIRED = {
    "REDIS_URL": (
        "REDIS_URL is no longer read: revoked tokens live in the database, which keeps them "
        "through any Redis restart; unset it, then copy those Redis holds with "
        "`flask auth import-revocations <its URL>` (rate limits in Redis: RATELIMIT_STORAGE_URI)"
    ),
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
    #: Threads per server process that run the app (`deploy/serve`; `backoffice.serving`).
    SERVER_THREADS = 4
    #: Seconds a client has to send a request's whole body (`deploy/serve`); then 408.
    BODY_READ_TIMEOUT = 10.0
    LOG_LEVEL = "INFO"
    LOG_JSON = True
    DB_POOL_SIZE = 10
    #: How many proxies in front of us may set X-Forwarded-For / -Proto / -Host / -Port
    #: (Werkzeug's ProxyFix; 0: trust none). Behind the bundled Nginx: 1 each.
    PROXY_FIX_X_FOR = 0
    PROXY_FIX_X_PROTO = 0
    PROXY_FIX_X_HOST = 0
    PROXY_FIX_X_PORT = 0
    #: The host names clients may reach us by (Flask checks `Host` against them: any other
    #: is 400), so links are never built from a forged one. None accepts any host.
    TRUSTED_HOSTS: list[str] | None = ["localhost", "127.0.0.1"]
    #: Browser origins allowed to call the API (CORS); none by default, ["*"] for any.
    CORS_ORIGINS: list[str] = []
    #: Let browsers send cookies or HTTP auth cross-origin (Access-Control-Allow-Credentials).
    #: Bearer tokens and API keys are plain headers and need no credentials mode.
    CORS_ALLOW_CREDENTIALS = False
    #: Seconds a browser may cache a preflight's answer (Chromium caps it at 7200).
    CORS_MAX_AGE = 600
    #: Strict-Transport-Security max-age on answers to HTTPS requests; 0 sends none.
    HSTS_MAX_AGE = 0
    IDEMPOTENCY_TTL_SECONDS = 24 * 60 * 60
    #: Read instance/config.py for local overrides.
    INSTANCE_CONFIG = True
    TESTING = False
    DEBUG = False

    # Identity (users/, auth/)
    JWT_ACCESS_TOKEN_EXPIRES = timedelta(hours=1)
    JWT_REFRESH_TOKEN_EXPIRES = timedelta(days=14)
    #: A console sign-in lasts a working day; signing out, or any end of the person's
    #: credentials (deactivation, password or role change), ends it sooner.
    CONSOLE_SESSION_LIFETIME = timedelta(hours=8)
    #: The console's cookie is sent over HTTPS only (production's default).
    CONSOLE_COOKIE_SECURE = False
    JWT_ALGORITHM = "HS256"
    JWT_TOKEN_LOCATION = ["headers"]
    #: "open": anyone may sign up with POST /users; "admin": only admins create users.
    REGISTRATION = "open"
    #: Live API keys (neither revoked nor expired) one person may hold; past it, 409.
    API_KEYS_PER_USER = 50
    #: Failed logins allowed per client IP before 429 (Flask-Limiter notation).
    LOGIN_RATE_LIMIT = "5 per minute"
    #: Sign-ups (and sign-ups finding the email taken) allowed per client IP; admins are exempt.
    SIGNUP_RATE_LIMIT = "10 per hour"
    #: Counted in the application's database, shared by every process (`rate_limits`).
    RATELIMIT_STORAGE_URI = f"{DatabaseStorage.STORAGE_SCHEME[0]}://"
    RATELIMIT_STRATEGY = "fixed-window"
    #: Off: a limited view's every answer would carry the window's end as Retry-After; the
    #: 429 of a breached limit says it itself (`errors.handle_http_exception`).
    RATELIMIT_HEADERS_ENABLED = False
    #: Keep what the database says about tokens and API keys in each process, kept current
    #: by the database's notifications (PostgreSQL only; `auth.token_states`).
    AUTH_CACHE = True
    #: Seconds an entry of that cache is trusted without asking the database again: the
    #: bound on a change no trigger announced (replication, triggers bypassed).
    AUTH_CACHE_MAX_AGE = 5.0
    # argon2id parameters (RFC 9106's second recommended option by default).
    PASSWORD_HASH_TIME_COST = 3
    PASSWORD_HASH_MEMORY_COST = 64 * 1024
    PASSWORD_HASH_PARALLELISM = 4

    # Background work (jobs/, the queue)
    #: "" means the embedded broker: a SQLite file in instance/ (kombu's SQLAlchemy transport).
    CELERY_BROKER_URL = ""
    #: A running job not heard from for this long is taken to have lost its worker. Every
    #: queue's lease setting is checked as the queue is registered (`work.register`).
    JOB_LEASE_SECONDS = 120
    #: How often the worker's relay looks for accepted work that is not in the queue.
    RELAY_INTERVAL_SECONDS = 5.0
    #: A message taken by a worker that never claimed its row (the worker died holding it)
    #: is delivered again after this long: Redis's visibility timeout, and the relay's
    #: bound for work sent but unclaimed while the broker has nothing else waiting.
    RESEND_UNCLAIMED_SECONDS = 30.0

    # Retention (housekeeping.py): how long finished work is kept; 0 keeps it forever.
    #: Finished jobs (succeeded, failed, cancelled), with their results.
    JOB_RETENTION_DAYS = 30
    #: Processed and ignored webhook events, with their raw bodies.
    WEBHOOK_RETENTION_DAYS = 30
    #: Failed webhook events: longer, so nothing that needs attention disappears unseen.
    WEBHOOK_FAILED_RETENTION_DAYS = 90
    #: How often each worker tries to prune (one at a time prunes); 0: workers never do.
    PRUNE_INTERVAL_SECONDS = 300.0
    #: How often a worker records the overview's figures (`backoffice.activity`; one
    #: worker at a time); 0: never (the overview's charts stay empty).
    ACTIVITY_INTERVAL_SECONDS = 60.0
    #: Rows per DELETE: each batch is its own short transaction.
    PRUNE_BATCH_SIZE = 1000

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
    #: Seconds a whole chat call may take, streamed or not (then 504, or an `error` event).
    LLM_DEADLINE = 300.0
    #: Chat calls allowed per user (Flask-Limiter notation), in RATELIMIT_STORAGE_URI.
    CHAT_RATE_LIMIT = "20 per minute"
    #: Chat calls in flight per server process: fewer than SERVER_THREADS, so the other
    #: requests always find a thread (`tools.capacity`). The next one: 503, at once.
    CHAT_CALLS_PER_PROCESS = 2
    #: Chat calls in flight per user, across every process. The next one: 429.
    CHAT_CALLS_PER_USER = 2

    # Metrics (metrics.py)
    #: The bearer token `GET /metrics` wants; "" leaves the endpoint off (404).
    METRICS_TOKEN = ""
    #: An OTLP/HTTP collector's root (spans go to {it}/v1/traces); "" leaves tracing off.
    OTEL_EXPORTER_OTLP_ENDPOINT = ""

    # Error reporting (error_reporting.py)
    #: Where unexpected errors are reported (Sentry's DSN); "" leaves reporting off.
    SENTRY_DSN = ""
    #: The environment errors are filed under; "" means APP_ENV.
    SENTRY_ENVIRONMENT = ""
    #: The share of requests and tasks traced to Sentry, 0 to 1 (0: errors only).
    SENTRY_TRACES_SAMPLE_RATE = 0.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> dict[str, Any]:
        """The profile's defaults, overridden by whatever `environ` sets, validated."""
        for variable, refusal in RETIRED.items():
            if environ.get(variable, "").strip():
                raise ConfigError(refusal)
        settings = {key: getattr(cls, key) for key in dir(cls) if key.isupper()}
        for variable, (key, parse) in ENVIRONMENT.items():
            if variable in environ:
                try:
                    settings[key] = parse(environ[variable])
                except ConfigError as error:
                    message = str(error)
                    raise ConfigError(
                        message if variable in message else f"{variable}: {message}"
                    ) from None
                except ValueError:  # int() or float() of something else
                    raise ConfigError(
                        f"{variable} must be a number, not {environ[variable]!r}"
                    ) from None
        cls.validate(settings)
        return settings

    @classmethod
    def validate(cls, settings: dict[str, Any]) -> None:
        """Refuse settings no profile can run with."""
        if settings["SQLALCHEMY_DATABASE_URI"]:
            _check_database_url(settings["SQLALCHEMY_DATABASE_URI"])
        scheme = settings["RATELIMIT_STORAGE_URI"].partition("://")[0]
        if scheme not in (*DatabaseStorage.STORAGE_SCHEME, "memory") and not scheme.startswith(
            ("redis", "valkey")
        ):
            raise ConfigError(
                "RATELIMIT_STORAGE_URI must be database://, memory:// or a redis:// URL"
            )
        if settings["MAX_CONTENT_LENGTH"] <= 0:
            raise ConfigError("MAX_CONTENT_LENGTH must be positive")
        for timeout in ("LLM_TIMEOUT", "LLM_CONNECT_TIMEOUT"):
            if not 0 < settings[timeout] <= 3600:
                raise ConfigError(f"{timeout} must be a number of seconds between 0 and 3600")
        if settings["CHAT_CALLS_PER_PROCESS"] >= settings["SERVER_THREADS"]:
            raise ConfigError(
                f"CHAT_CALLS_PER_PROCESS ({settings['CHAT_CALLS_PER_PROCESS']}) must be lower "
                f"than SERVER_THREADS ({settings['SERVER_THREADS']}): chat calls waiting on the "
                "model server would otherwise hold every thread, and every other request wait"
            )
        if len(settings["LLM_MODEL"]) > 200:
            raise ConfigError("LLM_MODEL must be at most 200 characters")
        if settings["CORS_ORIGINS"] == ["*"] and settings["CORS_ALLOW_CREDENTIALS"]:
            raise ConfigError(
                "CORS_ORIGINS=* cannot go with CORS_ALLOW_CREDENTIALS: any web page could act "
                "with a visitor's credentials; list the origins instead"
            )
        for name in (
            "PROXY_FIX_X_FOR",
            "PROXY_FIX_X_PROTO",
            "PROXY_FIX_X_HOST",
            "PROXY_FIX_X_PORT",
        ):
            if settings[name] < 0:
                raise ConfigError(f"{name} must be a number of proxies, 0 or more")
        for name in ("CORS_MAX_AGE", "HSTS_MAX_AGE"):
            if settings[name] < 0:
                raise ConfigError(f"{name} must be a number of seconds, 0 or more")
        for limit in ("LOGIN_RATE_LIMIT", "SIGNUP_RATE_LIMIT", "CHAT_RATE_LIMIT"):
            try:
                parse_limit(settings[limit])
            except ValueError:
                raise ConfigError(f"{limit} must read like '5 per minute'") from None


def _check_database_url(url: str) -> None:
    """Refuse a URL SQLAlchemy cannot use, before a server forks workers that would each
    fail on it. The URL is never repeated: it may hold a password."""
    try:
        make_url(url).get_dialect().import_dbapi()
    except (ArgumentError, NoSuchModuleError, ImportError, ValueError):
        raise ConfigError(
            "DATABASE_URL is not a database URL this service can use "
            "(e.g. postgresql://user:password@host:5432/name or sqlite:////path/to/file.db)"
        ) from None


def admin_credentials(environ: Mapping[str, str]) -> tuple[str, str] | None:
    """ADMIN_EMAIL and ADMIN_PASSWORD, the first admin `flask users bootstrap-admin`
    creates: both, or neither (None). One without the other is refused, so a deployment
    never starts believing it has an admin it does not have."""
    email, password = environ.get("ADMIN_EMAIL", ""), environ.get("ADMIN_PASSWORD", "")
    if email and not password:
        raise ConfigError("ADMIN_EMAIL is set but ADMIN_PASSWORD is not: set both, or neither")
    if password and not email:
        raise ConfigError("ADMIN_PASSWORD is set but ADMIN_EMAIL is not: set both, or neither")
    return (email, password) if email else None


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
    CONSOLE_COOKIE_SECURE = True
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
    admin_credentials(environ)
    settings["APP_ENV"] = profile.APP_ENV
    return settings
