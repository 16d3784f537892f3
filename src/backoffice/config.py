"""Settings: each declared once, with its type, default, bounds and description.

`Config` below is the declaration: one field per setting, named as `app.config` knows
it, read from the environment variable of the same name (`DATABASE_URL` is the one
alias). The profiles (`DevelopmentConfig`, `TestingConfig`, `ProductionConfig`) differ
only in the defaults they list in `defaults` and in what they refuse. The configuration
page (docs/configuration.md) and `.env.example` are generated from this declaration
(`make settings`, `backoffice.config_docs`); a test fails when they fall behind.

`load_settings(os.environ)` is what `create_app()` uses; tests call it with a dict of
their own, and nothing else is read then: not `os.environ`, not a `.env` file (the
entry points load `.env` into the environment first, `backoffice.startup`).

A refused value stops the process with one line naming the variable (`ConfigError`):
the bounds and types declared here make those lines (`_refusal`); the few checks no
bound can say are validators that raise it themselves.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, ClassVar, Literal, NoReturn, Self, get_args, get_origin

from annotated_types import Ge, Gt, Le, MaxLen
from limits import parse as parse_limit
from pydantic import (
    BeforeValidator,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
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


def normalize_database_url(url: str) -> str:
    """Point PostgreSQL URLs at psycopg 3, whatever spelling the platform hands us."""
    for scheme in ("postgres://", "postgresql://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


# --- how a variable's text becomes a value --------------------------------------------
# Each applies to text only: a profile's default is already the value it stands for.


def _empty_is_false(value: object) -> object:
    """An empty variable (`LOG_JSON=`) is false, as it always was here."""
    return False if isinstance(value, str) and not value.strip() else value


def _seconds(value: object) -> object:
    """A whole number of seconds, kept as the timedelta Flask-JWT-Extended wants."""
    return timedelta(seconds=int(value.strip())) if isinstance(value, str) else value


def _split(text: str) -> list[str]:
    """Comma-separated names, sorted; spaces around them and empty ones do not count."""
    return sorted({name.strip() for name in text.split(",") if name.strip()})


def _names(value: object) -> object:
    return _split(value) if isinstance(value, str) else value


def _trimmed(value: object) -> object:
    return value.strip() if isinstance(value, str) else value


#: true/false (also 1/0, yes/no, on/off); empty is false.
Flag = Annotated[bool, BeforeValidator(_empty_is_false)]
#: A number of seconds in the environment, a timedelta in `app.config`.
Seconds = Annotated[timedelta, BeforeValidator(_seconds)]
#: Comma-separated names, kept as a set.
Names = Annotated[frozenset[str], BeforeValidator(_names)]
#: Text whose surrounding spaces are a slip, never meant (keys, tokens, a model's name).
Trimmed = Annotated[str, BeforeValidator(_trimmed)]

#: `scheme://host[:port]`, what a browser sends as `Origin` (no path, no trailing slash).
_ORIGIN = re.compile(r"^https?://[a-z0-9.-]+(:[0-9]{1,5})?$")


def _section(title: str) -> dict[str, Any]:
    """Marks the first setting of a group of the configuration page and `.env.example`."""
    return {"section": title}


class Config(BaseSettings):
    """Every setting, with the defaults shared by every profile."""

    model_config = SettingsConfigDict(
        case_sensitive=True,
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        validate_default=True,
        validate_by_name=True,
        validate_by_alias=True,
    )

    #: The profile's name: what `APP_ENV` says to pick it.
    APP_ENV: ClassVar[str] = "development"
    #: The profile's own defaults, where they differ from those declared below.
    defaults: ClassVar[Mapping[str, Any]] = {}

    # Flask's and the extensions' constants: no deployment sets them.
    TESTING: ClassVar[bool] = False
    DEBUG: ClassVar[bool] = False
    JWT_ALGORITHM: ClassVar[str] = "HS256"
    JWT_TOKEN_LOCATION: ClassVar[list[str]] = ["headers"]
    RATELIMIT_STRATEGY: ClassVar[str] = "fixed-window"
    #: Off: a limited view's every answer would carry the window's end as Retry-After; the
    #: 429 of a breached limit says it itself (`errors.handle_http_exception`).
    RATELIMIT_HEADERS_ENABLED: ClassVar[bool] = False

    SECRET_KEY: str = Field(
        DEFAULT_SECRET_KEY,
        description="Signs tokens, console sessions and pagination cursors. In production: "
        "32 or more random characters, e.g. "
        '`python -c "import secrets; print(secrets.token_urlsafe(48))"`; '
        "the default is refused there.",
        examples=["a-random-value-of-32-characters-or-more"],
        json_schema_extra=_section("Profile and secrets"),
    )

    SQLALCHEMY_DATABASE_URI: str | None = Field(
        None,
        validation_alias="DATABASE_URL",
        description="SQLAlchemy URL of the database. Unset: the SQLite file "
        "`instance/backoffice.db`. `postgres://` and `postgresql://` are read as "
        "`postgresql+psycopg://` (psycopg 3). Required in production.",
        examples=["postgresql://postgres@127.0.0.1:5432/backoffice"],
        json_schema_extra=_section("Storage"),
    )
    DB_POOL_SIZE: int = Field(
        10,
        ge=1,
        description="Connections per worker process to PostgreSQL (and as many again in overflow).",
    )
    INSTANCE_CONFIG: Flag = Field(
        True,
        description="Read `instance/config.py` (in `INSTANCE_PATH`) for local overrides.",
    )

    API_PREFIX: str = Field(
        "/api",
        description="Where the resources live, e.g. `/v1`. `/`, `/health`, `/docs`, "
        "`/openapi.json` and `/console` stay at the root.",
        json_schema_extra=_section("HTTP"),
    )
    MAX_CONTENT_LENGTH: int = Field(
        1024 * 1024,
        gt=0,
        description="Largest request body in bytes; larger is 413 before it is read. Keep "
        "Nginx's `client_max_body_size` equal.",
    )
    BODY_READ_TIMEOUT: float = Field(
        10.0,
        ge=0.1,
        le=600,
        description="Seconds a client has to send a request's whole body to `deploy/serve`; "
        "then 408, and the connection is closed. The body is read before the request takes "
        "a thread, so a slow client holds none. See [Isolation](operations/isolation.md).",
    )
    SERVER_THREADS: int = Field(
        4,
        ge=1,
        le=256,
        description="Threads per `deploy/serve` worker process that run the app "
        "(`backoffice.serving`).",
    )
    SERVER_AUTH_THREADS: int = Field(
        1,
        ge=1,
        le=256,
        description="Threads per `deploy/serve` worker process of their own for the login "
        "endpoints (`POST {prefix}/auth/token`, the console's sign-in), beside the "
        "`SERVER_THREADS`; each takes at most one thread's share of the process's time. A "
        "storm of password guesses waits behind itself, never for the threads everything "
        "else needs. See [Isolation](operations/isolation.md).",
    )
    SERVER_AUTH_QUEUE: int = Field(
        128,
        ge=1,
        le=10_000,
        description="Login requests per `deploy/serve` worker process that may wait for "
        "`SERVER_AUTH_THREADS`; the next one is 503 `server-busy` with `Retry-After: 1`, "
        "at once.",
        json_schema_extra={"unit": "requests"},
    )
    PROXY_FIX_X_FOR: int = Field(
        0,
        ge=0,
        description="How many proxies in front may set `X-Forwarded-For` (Werkzeug's "
        "`ProxyFix`). `0` trusts none (the header is ignored: a client could forge it); `1` "
        "behind the bundled Nginx, so the client's address is logged and rate-limited.",
        json_schema_extra={"unit": "proxies"},
    )
    PROXY_FIX_X_PROTO: int = Field(
        0,
        ge=0,
        description="The same for `X-Forwarded-Proto`: links and the OpenAPI `servers` name "
        "the scheme the client used.",
        json_schema_extra={"unit": "proxies"},
    )
    PROXY_FIX_X_HOST: int = Field(
        0,
        ge=0,
        description="The same for `X-Forwarded-Host`. A forwarded host is still checked "
        "against `TRUSTED_HOSTS`.",
        json_schema_extra={"unit": "proxies"},
    )
    PROXY_FIX_X_PORT: int = Field(
        0,
        ge=0,
        description="The same for `X-Forwarded-Port`.",
        json_schema_extra={"unit": "proxies"},
    )
    TRUSTED_HOSTS: list[str] | None = Field(
        ["localhost", "127.0.0.1"],
        description="Comma-separated host names the API is reached by (`.example.com` takes "
        "every subdomain; the port does not matter). A request with any other `Host` is 400, "
        'so links (`Link: rel="next"`) are only ever built from these names. Include what '
        "health checks use (the container's is `127.0.0.1`, and the bundled Nginx passes a "
        "health check sent without `Host` on as `127.0.0.1`). `*` trusts any host (refused "
        "in production, where this is required).",
        examples=["api.example.com"],
    )
    IDEMPOTENCY_TTL_SECONDS: int = Field(
        24 * 60 * 60,
        # At least a minute: a client retries within that, and at 0 or less a retry after
        # the first answer would create a second resource. At most 30 days: the records
        # are kept that long, one per create.
        ge=60,
        le=30 * 24 * 60 * 60,
        description="How long an `Idempotency-Key` is remembered, in seconds (30 days at "
        "most). At 0 or less a retry after the first answer would create a second resource.",
    )

    CORS_ORIGINS: list[str] = Field(
        [],
        description="Comma-separated origins (`scheme://host[:port]`, no path) whose web "
        "pages may call the API from a browser. `*` allows any origin (only without "
        "`CORS_ALLOW_CREDENTIALS`). Others get no `Access-Control-*` header, so their "
        "browsers refuse.",
        examples=["https://app.example.com,http://localhost:3000"],
        json_schema_extra=_section("Browsers"),
    )
    CORS_ALLOW_CREDENTIALS: Flag = Field(
        False,
        description="Send `Access-Control-Allow-Credentials: true` (cookies, HTTP auth). Not "
        "needed for `Authorization: Bearer` or `X-API-Key`, which are plain headers. Refused "
        "with `CORS_ORIGINS=*`.",
    )
    CORS_MAX_AGE: int = Field(
        600,
        ge=0,
        description="Seconds a browser may reuse a preflight's answer "
        "(`Access-Control-Max-Age`; Chromium caps it at 7200).",
    )
    HSTS_MAX_AGE: int = Field(
        0,
        ge=0,
        description="`Strict-Transport-Security: max-age=N` on answers to HTTPS requests "
        "(behind a proxy: as `X-Forwarded-Proto` says, with `PROXY_FIX_X_PROTO=1`); `0` sends "
        "none. Set it (e.g. `31536000`) once the API is served over HTTPS only.",
    )

    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO",
        description="The lowest level logged (any case).",
        json_schema_extra=_section("Logs"),
    )
    LOG_JSON: Flag = Field(
        True,
        description="JSON lines (one per request), or a readable console format.",
    )

    REGISTRATION: Literal["open", "admin"] = Field(
        "open",
        description="`open`: anyone signs up with `POST /api/users`; `admin`: only admins "
        "create users.",
        json_schema_extra=_section("People and sign-in"),
    )
    API_KEYS_PER_USER: int = Field(
        50,
        ge=1,
        le=10_000,
        description="Live API keys (neither revoked nor expired) one person may hold; "
        "creating another is 409 naming the `limit`. Holds for any number of simultaneous "
        "creations.",
    )
    JWT_ACCESS_TOKEN_EXPIRES: Seconds = Field(
        timedelta(hours=1),
        gt=timedelta(0),
        description="Access token lifetime, seconds.",
    )
    JWT_REFRESH_TOKEN_EXPIRES: Seconds = Field(
        timedelta(days=14),
        gt=timedelta(0),
        description="Refresh token lifetime, seconds (14 days). Refresh tokens are single-use.",
    )
    CONSOLE_SESSION_LIFETIME: Seconds = Field(
        timedelta(hours=8),
        ge=timedelta(seconds=60),
        le=timedelta(days=7),
        description="How long a console sign-in lasts, seconds (a working day). Signing out, "
        "deactivation, a password or role change end it sooner.",
    )
    CONSOLE_COOKIE_SECURE: Flag = Field(
        False,
        description="The console's session cookie is sent over HTTPS only.",
    )
    LOGIN_RATE_LIMIT: str = Field(
        "5 per minute",
        description="Failed password checks (logins, and a wrong `current_password` on a "
        "password or email change) allowed per client IP; then 429 with `Retry-After` until "
        "the window ends. Holds under any concurrency, across every worker process and host "
        "sharing `RATELIMIT_STORAGE_URI`.",
    )
    SIGNUP_RATE_LIMIT: str = Field(
        "10 per hour",
        description="Sign-ups (created or refused as taken) allowed per client IP; admins "
        "creating users are not limited.",
    )
    RATELIMIT_STORAGE_URI: str = Field(
        f"{DatabaseStorage.STORAGE_SCHEME[0]}://",
        description="Where failed logins, sign-ups and chat calls are counted. `database://`: "
        "a table in `DATABASE_URL`'s database, shared by every worker and host with no other "
        "server (`rate_limits.py`); `redis://...`: Redis, faster under heavy login traffic; "
        "`memory://`: per process, so only right with a single worker process. While it does "
        "not answer, logins and chat calls are 503, never unlimited. A Redis that loses its "
        "data loses the counts with it: each client gets at most one more window's worth of "
        "attempts per loss, an accepted and bounded consequence. Nothing that ends a "
        "credential is kept in Redis. `flask limiter config` shows the storage and whether "
        "it answers.",
        examples=["redis://127.0.0.1:6379/0"],
    )
    AUTH_CACHE: Flag = Field(
        True,
        description="On PostgreSQL: each process keeps what the database said about the "
        "tokens and API keys it checked, and PostgreSQL tells every process (`LISTEN/NOTIFY`, "
        "from triggers) when one may have ended, so a repeated credential costs no query. An "
        "ended credential is refused at once by the process that ended it and within "
        "milliseconds by the others; one ended by a change no trigger announces, within "
        "`AUTH_CACHE_MAX_AGE` (see [How fast an ended credential is refused]"
        "(api/auth-and-users.md#how-fast-an-ended-credential-is-refused)). `false`: every "
        "request asks the database. No effect on SQLite.",
    )
    AUTH_CACHE_MAX_AGE: float = Field(
        5.0,
        ge=0.1,
        le=300,
        description="Seconds a process trusts what the database said about a credential "
        "before asking again: the bound on refusing a credential ended by a change no trigger "
        "announces (logical replication, `pg_restore --disable-triggers`, a trigger disabled "
        "and enabled again in one transaction). Costs at most one query per credential per "
        "this many seconds per process.",
    )
    # argon2id parameters (RFC 9106's second recommended option by default).
    PASSWORD_HASH_TIME_COST: int = Field(
        3,
        ge=1,
        description="argon2id passes. Stored hashes made with other parameters are upgraded "
        "at the next login.",
    )
    PASSWORD_HASH_MEMORY_COST: int = Field(
        64 * 1024,
        ge=8,
        description="argon2id memory, KiB.",
    )
    PASSWORD_HASH_PARALLELISM: int = Field(
        4,
        ge=1,
        description="argon2id lanes.",
    )

    CELERY_BROKER_URL: str = Field(
        "",
        description="Where jobs are queued: `redis://...` or `amqp://...` with several "
        "machines. Unset: the embedded broker, a SQLite file in `instance/` "
        "(`sqla+sqlite:///instance/broker.db`).",
        examples=["redis://127.0.0.1:6379/1"],
        json_schema_extra=_section("Background work"),
    )
    JOB_LEASE_SECONDS: int = Field(
        120,
        gt=0,
        description="A running job not heard from for this long is taken to have lost its "
        "worker and is run again (every queue's lease is checked as the queue is registered, "
        "`work.register`).",
    )
    WEBHOOK_LEASE_SECONDS: int = Field(
        120,
        gt=0,
        description="The same for a webhook event being processed.",
    )
    RELAY_INTERVAL_SECONDS: float = Field(
        5.0,
        gt=0,
        description="How often each worker re-sends accepted work that is not in the queue "
        "(and, on Redis, looks for messages a dead worker held).",
    )
    RESEND_UNCLAIMED_SECONDS: float = Field(
        30.0,
        ge=1,
        le=3600,
        description="A message a worker took and never started (it died holding it) is run "
        "by another worker within this plus `RELAY_INTERVAL_SECONDS`: Redis gives it back "
        "after this long (its visibility timeout), and the relay sends again work sent this "
        "long ago and still unclaimed while the broker's queue is empty. See "
        "[Background jobs](api/jobs.md).",
    )
    JOB_RETENTION_DAYS: int = Field(
        30,
        ge=0,
        le=36500,
        description="Finished jobs (succeeded, failed, cancelled), with their results and CSV "
        "reports, are deleted this many days after they finished. `0` keeps them forever. "
        "See [Retention](api/retention.md).",
        json_schema_extra={"unit": "days", **_section("Retention")},
    )
    WEBHOOK_RETENTION_DAYS: int = Field(
        30,
        ge=0,
        le=36500,
        description="Processed and ignored webhook events (with their raw bodies) are deleted "
        "this many days after they finished. `0` keeps them forever.",
        json_schema_extra={"unit": "days"},
    )
    WEBHOOK_FAILED_RETENTION_DAYS: int = Field(
        90,
        ge=0,
        le=36500,
        description="Failed webhook events are kept this long, so nothing that needs "
        "attention disappears unseen (a replay makes one wait again, and it is not deleted "
        "while it waits or runs). `0` keeps them forever.",
        json_schema_extra={"unit": "days"},
    )
    PRUNE_INTERVAL_SECONDS: float = Field(
        300.0,
        ge=0,
        le=86400,
        description="How often each worker tries to prune (only one prunes at a time; the "
        "others skip that turn). `0`: workers never prune (run `flask prune` from cron).",
    )
    PRUNE_BATCH_SIZE: int = Field(
        1000,
        ge=1,
        le=100_000,
        description="Rows per `DELETE`, each batch its own short transaction.",
    )
    ACTIVITY_INTERVAL_SECONDS: float = Field(
        60.0,
        ge=0,
        le=3600,
        description="How often a worker records the figures the console's overview charts "
        "(requests, webhook outcomes, orders, job durations, queue rows; one worker at a "
        "time). `0`: never (the charts stay empty).",
    )

    WEBHOOK_SECRETS: dict[str, str] = Field(
        {},
        description='JSON object `{"source": "whsec_..."}`: each listed source must sign every '
        "delivery (Standard Webhooks).",
        json_schema_extra=_section("Webhooks"),
    )
    WEBHOOK_UNSIGNED_SOURCES: Names = Field(
        frozenset(),
        description="Comma-separated sources allowed to deliver unsigned (development opens "
        "`default`, so a plain curl works on a laptop). Any other source without a secret is "
        "refused (401).",
    )

    LLM_BASE_URL: str = Field(
        "",
        description="The OpenAI-compatible model server's root, e.g. `http://127.0.0.1:8001` "
        "or `https://api.openai.com/v1` (a trailing `/v1` is fine); chat calls go to "
        "`{LLM_BASE_URL}/v1/chat/completions`. Unset: chat is off (503).",
        examples=["http://127.0.0.1:8001"],
        json_schema_extra=_section("Tools: the chat gateway"),
    )
    LLM_MODEL: Trimmed = Field(
        "",
        max_length=200,
        description="The model every chat call asks for. Unset: chat is off (503).",
        examples=["fake-model"],
    )
    LLM_API_KEY: Trimmed = Field(
        "",
        description="Sent to the model server as `Authorization: Bearer ...`; never logged, "
        "never in an answer. Unset: no `Authorization` header.",
    )
    LLM_TIMEOUT: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Seconds to wait for the model server's answer, or for a stream's next "
        "piece; then 504 (or an `error` event).",
    )
    LLM_CONNECT_TIMEOUT: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="Seconds to wait for a connection to the model server; then 504.",
    )
    LLM_DEADLINE: float = Field(
        300.0,
        ge=1,
        le=86400,
        description="Seconds a whole chat call may take, streamed or not; then 504, or a "
        "stream's `error` event. With `LLM_TIMEOUT`, a call lasts at most "
        "`LLM_DEADLINE + LLM_TIMEOUT`.",
    )
    CHAT_RATE_LIMIT: str = Field(
        "20 per minute",
        description="Chat calls allowed per user (Flask-Limiter notation); then 429 with "
        "`Retry-After`. Counted in `RATELIMIT_STORAGE_URI`.",
    )
    CHAT_CALLS_PER_PROCESS: int = Field(
        2,
        ge=1,
        le=255,
        description="Chat calls in flight per server process, streamed or not; must be below "
        "`SERVER_THREADS`, so the other requests always find a thread (`tools.capacity`). The "
        "next one: 503 `model-server-busy`, `Retry-After: 1`, at once.",
    )
    CHAT_CALLS_PER_USER: int = Field(
        2,
        ge=1,
        le=100,
        description="Chat calls in flight per user across every process and replica. The "
        "next one: 429 `too-many-chat-calls`, `Retry-After: 5`.",
    )

    METRICS_TOKEN: Trimmed = Field(
        "",
        description="The bearer token `GET /metrics` wants (compared in constant time); "
        "anything else is 401. Unset: `/metrics` is off (404). In production, 32 characters "
        'or more: `python -c "import secrets; print(secrets.token_urlsafe(32))"`.',
        json_schema_extra=_section("Metrics and tracing"),
    )
    OTEL_EXPORTER_OTLP_ENDPOINT: str = Field(
        "",
        description="An OpenTelemetry collector's OTLP/HTTP root; spans go to "
        "`{it}/v1/traces`. The SDK's other `OTEL_*` variables apply. Unset: tracing is off. "
        "See [Tracing](operations/tracing.md).",
        examples=["http://127.0.0.1:4318"],
    )

    SENTRY_DSN: str = Field(
        "",
        description="Where unexpected errors are reported: a Sentry project's DSN, "
        "`https://<public key>@<host>/<project>` (needs the `sentry` extra). Unset: reporting "
        "is off and the SDK is not imported. Reports are scrubbed of bodies, cookies, "
        "credentials and secret settings: see [Error reporting](operations/error-reporting.md).",
        examples=["https://<public key>@o0.ingest.sentry.io/<project>"],
        json_schema_extra=_section("Error reporting"),
    )
    SENTRY_ENVIRONMENT: Trimmed = Field(
        "",
        description="The environment errors are filed under (`production`, `staging`, ...). "
        "Unset: `APP_ENV`.",
        examples=["production"],
    )
    SENTRY_TRACES_SAMPLE_RATE: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of requests and tasks also traced to Sentry; `0` sends errors only.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the values `from_env` passes, taken from the environment it was given:
        never `os.environ`, a `.env` file or a secrets folder behind a test's back."""
        return (init_settings,)

    # --- the profile's defaults, and the checks no bound can say -------------------------

    @model_validator(mode="before")
    @classmethod
    def _profile_defaults(cls, given: dict[str, Any]) -> dict[str, Any]:
        return {**cls.defaults, **given}

    @field_validator("SQLALCHEMY_DATABASE_URI", mode="before")
    @classmethod
    def _database_url(cls, value: object) -> object:
        """Refuse a URL SQLAlchemy cannot use, before a server forks workers that would each
        fail on it. The URL is never repeated: it may hold a password."""
        if not isinstance(value, str):
            return value
        if not value:
            return None  # the SQLite file in instance/, resolved by create_app()
        url = normalize_database_url(value)
        try:
            make_url(url).get_dialect().import_dbapi()
        except (ArgumentError, NoSuchModuleError, ImportError, ValueError):
            raise ConfigError(
                "DATABASE_URL is not a database URL this service can use "
                "(e.g. postgresql://user:password@host:5432/name or sqlite:////path/to/file.db)"
            ) from None
        return url

    @field_validator("API_PREFIX", mode="before")
    @classmethod
    def _prefix(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        prefix = value.strip()
        if not prefix.startswith("/") or (prefix.endswith("/") and prefix != "/"):
            raise ConfigError(f"API_PREFIX must start with '/' and not end with one: {value!r}")
        return "" if prefix == "/" else prefix

    @field_validator("LOG_LEVEL", mode="before")
    @classmethod
    def _log_level(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("REGISTRATION", mode="before")
    @classmethod
    def _registration(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("TRUSTED_HOSTS", mode="before")
    @classmethod
    def _hosts(cls, value: object) -> object:
        """Comma-separated host names (`.example.com` takes every subdomain); `*` for any."""
        if not isinstance(value, str):
            return value
        return None if value.strip() == "*" else _split(value.lower())

    @field_validator("CORS_ORIGINS", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        """Comma-separated origins allowed to call the API from a browser; `*` for any."""
        if not isinstance(value, str):
            return value
        origins = _split(value.lower())
        for origin in origins:
            if origins != ["*"] and not _ORIGIN.match(origin):
                raise ConfigError(
                    f"CORS_ORIGINS lists {origin!r}: each origin is scheme://host[:port], "
                    "like https://app.example.com, with no path (or a lone * for any origin)"
                )
        return origins

    @field_validator("WEBHOOK_SECRETS", mode="before")
    @classmethod
    def _secrets(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        refusal = ConfigError("WEBHOOK_SECRETS must be a JSON object {source: secret}")
        try:
            secrets = json.loads(value or "{}")
        except ValueError:
            raise refusal from None
        if not isinstance(secrets, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in secrets.items()
        ):
            raise refusal
        return secrets

    @field_validator("LLM_BASE_URL", "OTEL_EXPORTER_OTLP_ENDPOINT", mode="before")
    @classmethod
    def _http_url(cls, value: object, info: ValidationInfo) -> object:
        """A server's root, without the trailing slash (nor, for the model server, `/v1`)."""
        if not isinstance(value, str):
            return value
        url = value.strip().rstrip("/")
        if info.field_name == "LLM_BASE_URL":
            url = url.removesuffix("/v1")
        if url and not url.startswith(("http://", "https://")):
            raise ConfigError(
                f"{info.field_name} must be an http:// or https:// URL, not {value!r}"
            )
        return url

    @field_validator("SENTRY_DSN", mode="before")
    @classmethod
    def _sentry_dsn(cls, value: object) -> object:
        """A Sentry DSN, or "" for none. Not repeated in the refusal: a credential of sorts."""
        if not isinstance(value, str):
            return value
        dsn = value.strip()
        if dsn and not (dsn.startswith(("http://", "https://")) and "@" in dsn):
            raise ConfigError(
                "SENTRY_DSN must read like https://<key>@<host>/<project>, or be empty"
            )
        return dsn

    @field_validator("LOGIN_RATE_LIMIT", "SIGNUP_RATE_LIMIT", "CHAT_RATE_LIMIT")
    @classmethod
    def _rate_limit(cls, value: str, info: ValidationInfo) -> str:
        try:
            parse_limit(value)
        except ValueError:
            raise ConfigError(f"{info.field_name} must read like '5 per minute'") from None
        return value

    @field_validator("RATELIMIT_STORAGE_URI")
    @classmethod
    def _rate_limit_storage(cls, value: str) -> str:
        scheme = value.partition("://")[0]
        if scheme not in (*DatabaseStorage.STORAGE_SCHEME, "memory") and not scheme.startswith(
            ("redis", "valkey")
        ):
            raise ConfigError(
                "RATELIMIT_STORAGE_URI must be database://, memory:// or a redis:// URL"
            )
        return value

    @model_validator(mode="after")
    def _settings_agree(self) -> Self:
        if self.CHAT_CALLS_PER_PROCESS >= self.SERVER_THREADS:
            raise ConfigError(
                f"CHAT_CALLS_PER_PROCESS ({self.CHAT_CALLS_PER_PROCESS}) must be lower "
                f"than SERVER_THREADS ({self.SERVER_THREADS}): chat calls waiting on the "
                "model server would otherwise hold every thread, and every other request wait"
            )
        if self.CORS_ORIGINS == ["*"] and self.CORS_ALLOW_CREDENTIALS:
            raise ConfigError(
                "CORS_ORIGINS=* cannot go with CORS_ALLOW_CREDENTIALS: any web page could act "
                "with a visitor's credentials; list the origins instead"
            )
        return self

    # --- reading the environment ---------------------------------------------------------

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Environment variable -> setting, for every setting."""
        return {
            field.validation_alias if isinstance(field.validation_alias, str) else name: name
            for name, field in cls.model_fields.items()
        }

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> dict[str, Any]:
        """The profile's defaults, overridden by whatever `environ` sets, validated: the
        settings as `app.config` takes them."""
        for variable, refusal in RETIRED.items():
            if environ.get(variable, "").strip():
                raise ConfigError(refusal)
        given: dict[str, Any] = {
            variable: environ[variable] for variable in cls.variables() if variable in environ
        }
        try:
            settings = cls(**given)
        except ValidationError as invalid:
            raise ConfigError(_refusal(cls, invalid.errors()[0], given)) from None
        constants = {name: getattr(cls, name) for name in cls.__class_vars__ if name.isupper()}
        return {**settings.model_dump(), **constants}


def _refusal(profile: type[Config], error: ErrorDetails, given: Mapping[str, str]) -> str:
    """The one line that refuses a value outside its declared type or bounds."""
    variable = str(error["loc"][0]) if error["loc"] else ""
    setting = profile.variables().get(variable)
    if setting is None:
        return error["msg"]
    field = profile.model_fields[setting]
    line = f"{variable} must be {expected(field)}"
    if variable in given and not any(isinstance(rule, MaxLen) for rule in field.metadata):
        line += f", not {given[variable]!r}"
    return line


def _shown(bound: object) -> str:
    """A bound as the environment writes it: 2592000 (not 2.592e+06), 0.1, seconds."""
    if isinstance(bound, timedelta):
        bound = bound.total_seconds()
    if isinstance(bound, float) and not bound.is_integer():
        return f"{bound:g}"
    return f"{bound:.0f}" if isinstance(bound, float) else str(bound)


def extra(field: FieldInfo, key: str) -> str | None:
    """What the declaration says of a field beyond pydantic's own terms (`unit`, `section`)."""
    value = field.json_schema_extra.get(key) if isinstance(field.json_schema_extra, dict) else None
    return str(value) if value is not None else None


def bounds(field: FieldInfo) -> dict[str, str]:
    """The field's declared bounds, by kind (`ge`, `gt`, `le`, `max_length`), as text."""
    found: dict[str, str] = {}
    for rule in field.metadata:
        if isinstance(rule, Ge):
            found["ge"] = _shown(rule.ge)
        elif isinstance(rule, Gt):
            found["gt"] = _shown(rule.gt)
        elif isinstance(rule, Le):
            found["le"] = _shown(rule.le)
        elif isinstance(rule, MaxLen):
            found["max_length"] = str(rule.max_length)
    return found


def expected(field: FieldInfo) -> str:
    """What a variable must be, in words: `a number from 1 to 256`, `'open' or 'admin'`."""
    if get_origin(field.annotation) is Literal:
        choices = [repr(choice) for choice in get_args(field.annotation)]
        return " or ".join(choices) if len(choices) == 2 else "one of " + ", ".join(choices)
    if field.annotation is bool:
        return "true or false"
    limits = bounds(field)
    if "max_length" in limits:
        return f"at most {limits['max_length']} characters"
    unit = extra(field, "unit")
    number = f"a number of {unit}" if unit else "a number"
    if limits.get("gt") == "0":
        number = "a positive " + number.removeprefix("a ")
    elif "gt" in limits:
        number += f" above {limits['gt']}"
    if "ge" in limits:
        return (
            f"{number} from {limits['ge']} to {limits['le']}"
            if "le" in limits
            else (f"{number}, {limits['ge']} or more")
        )
    return f"{number} up to {limits['le']}" if "le" in limits else number


#: Variables no longer read, and the one line that refuses a process started with one
#: set: an operator who set it is told, not silently ignored.
RETIRED = {
    "REDIS_URL": (
        "REDIS_URL is no longer read: revoked tokens live in the database, which keeps them "
        "through any Redis restart; unset it, then copy those Redis holds with "
        "`flask auth import-revocations <its URL>` (rate limits in Redis: RATELIMIT_STORAGE_URI)"
    ),
}


@dataclass(frozen=True)
class Variable:
    """A variable read outside `app.config`: by the process, a server or a script. It is
    documented beside the settings (the configuration page, `.env.example`)."""

    name: str
    #: The default, as the configuration page says it (Markdown).
    default: str
    description: str
    #: The line `.env.example` shows, commented out.
    line: str
    #: The group of settings it is listed with, at the head of it.
    section: str


#: Every variable read outside the settings, each where its readers are named.
PROCESS_VARIABLES = (
    Variable(
        "APP_ENV",
        "`development`",
        "The profile: `development`, `testing` or `production` (`load_settings`). Production "
        "refuses to start with the default or a short `SECRET_KEY`, or without `DATABASE_URL` "
        "or `TRUSTED_HOSTS`.",
        "APP_ENV=development",
        "Profile and secrets",
    ),
    Variable(
        "INSTANCE_PATH",
        "`./instance`",
        "Folder for the SQLite files (database, embedded broker), `config.py` overrides and "
        "`make run`'s lock (`run.lock`).",
        "INSTANCE_PATH=./instance",
        "Storage",
    ),
    Variable(
        "HOST",
        "`127.0.0.1`",
        "Where `make run` / `deploy/serve` listen (`backoffice.run`).",
        "HOST=127.0.0.1",
        "HTTP",
    ),
    Variable(
        "PORT",
        "`5000`",
        "The port they listen on. `make run` refuses a port something else listens on.",
        "PORT=5000",
        "HTTP",
    ),
    Variable(
        "GRANIAN_*",
        "see `deploy/granian.env`",
        "Any Granian setting (workers, threads, timeouts) overrides the checked-in file.",
        "GRANIAN_WORKERS=2",
        "HTTP",
    ),
    Variable(
        "WEB_CONCURRENCY",
        "twice the cores",
        "Gunicorn's worker processes (`deploy/gunicorn.conf.py`), when it serves instead of "
        "Granian; its threads per worker are `SERVER_THREADS`.",
        "WEB_CONCURRENCY=4",
        "HTTP",
    ),
    Variable(
        "ADMIN_EMAIL",
        "unset",
        "At start-up (`make run`, the container), create this admin if no admin exists. Both "
        "`ADMIN_EMAIL` and `ADMIN_PASSWORD`, or neither: one without the other is refused "
        "(`admin_credentials`).",
        "ADMIN_EMAIL=admin@example.com",
        "People and sign-in",
    ),
    Variable(
        "ADMIN_PASSWORD",
        "unset",
        "That admin's password.",
        "ADMIN_PASSWORD=change-me-please",
        "People and sign-in",
    ),
    Variable(
        "PROMETHEUS_MULTIPROC_DIR",
        "`./instance/prometheus` (set by `deploy/serve`, the Procfile, the image: "
        "`/app/prometheus`)",
        "Where every process of the host writes its metric values for `/metrics` to add up. "
        "Read when Python starts, so it is an environment variable of the process, not a "
        "setting; emptied by `deploy/serve` at each server start. A missing directory whose "
        "parent exists is made by the first process; one whose parent is missing, a file, or "
        "one the process may not write to stops every entry point with one line (exit 2). "
        "Unset (`make dev`), a process serves only its own values. See "
        "[Metrics](operations/metrics.md).",
        "PROMETHEUS_MULTIPROC_DIR=./instance/prometheus",
        "Metrics and tracing",
    ),
    Variable(
        "OTEL_SERVICE_NAME",
        "`backoffice`",
        "The service name on every span (with tracing on).",
        "OTEL_SERVICE_NAME=backoffice",
        "Metrics and tracing",
    ),
)


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
    defaults = {
        "LOG_JSON": False,
        # So a plain curl to POST {prefix}/webhook works on a laptop.
        "WEBHOOK_UNSIGNED_SOURCES": frozenset({"default"}),
    }


class TestingConfig(Config):
    APP_ENV = "testing"
    TESTING = True
    defaults = {
        "INSTANCE_CONFIG": False,
        # Cheap hashes keep the suite fast; still argon2id, and rehash-on-login is tested.
        "PASSWORD_HASH_TIME_COST": 1,
        "PASSWORD_HASH_MEMORY_COST": 1024,
        "PASSWORD_HASH_PARALLELISM": 1,
    }


class ProductionConfig(Config):
    APP_ENV = "production"
    defaults = {
        "INSTANCE_CONFIG": False,
        "CONSOLE_COOKIE_SECURE": True,
        # No default: the names a deployment is reached by are its own.
        "TRUSTED_HOSTS": None,
    }

    @model_validator(mode="after")
    def _fit_for_production(self) -> Self:
        if self.SECRET_KEY == DEFAULT_SECRET_KEY or len(self.SECRET_KEY) < 32:
            raise ConfigError(
                "production needs SECRET_KEY: a random value of 32 characters or more "
                '(python -c "import secrets; print(secrets.token_urlsafe(48))")'
            )
        if not self.SQLALCHEMY_DATABASE_URI:
            raise ConfigError("production needs DATABASE_URL")
        if self.METRICS_TOKEN and len(self.METRICS_TOKEN) < 32:
            raise ConfigError(
                "METRICS_TOKEN must be a random value of 32 characters or more "
                '(python -c "import secrets; print(secrets.token_urlsafe(32))")'
            )
        if not self.TRUSTED_HOSTS:
            raise ConfigError(
                "production needs TRUSTED_HOSTS: the host names clients reach the API by, "
                "comma-separated (e.g. api.example.com), and those health checks use"
            )
        return self


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
