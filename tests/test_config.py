"""Profiles, environment overrides, and what production refuses (PRODUCT.md §3)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from backoffice.config import (
    DEFAULT_SECRET_KEY,
    PROFILES,
    Config,
    ConfigError,
    load_settings,
)

STRONG_SECRET = "s" * 40
PG = "postgresql+psycopg://app@db/backoffice"


def test_development_is_the_default_profile():
    settings = load_settings({})
    assert settings["APP_ENV"] == "development"
    assert settings["SQLALCHEMY_DATABASE_URI"] is None  # the SQLite file in instance/
    assert settings["API_PREFIX"] == "/api"


def test_environment_overrides_the_profile():
    settings = load_settings(
        {"APP_ENV": "testing", "API_PREFIX": "/v1", "MAX_CONTENT_LENGTH": "2048", "LOG_JSON": "no"}
    )
    assert settings["TESTING"] is True
    assert settings["API_PREFIX"] == "/v1"
    assert settings["MAX_CONTENT_LENGTH"] == 2048
    assert settings["LOG_JSON"] is False


def test_production_refuses_the_default_secret():
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_settings({"APP_ENV": "production", "DATABASE_URL": PG})
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_settings(
            {"APP_ENV": "production", "DATABASE_URL": PG, "SECRET_KEY": DEFAULT_SECRET_KEY}
        )


def test_production_refuses_a_short_secret():
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_settings({"APP_ENV": "production", "DATABASE_URL": PG, "SECRET_KEY": "short"})


def test_production_refuses_to_run_without_a_database_url():
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        load_settings({"APP_ENV": "production", "SECRET_KEY": STRONG_SECRET})


def test_production_refuses_to_run_without_trusted_hosts():
    for hosts in ({}, {"TRUSTED_HOSTS": ""}, {"TRUSTED_HOSTS": "*"}):
        with pytest.raises(ConfigError, match="TRUSTED_HOSTS"):
            load_settings(
                {"APP_ENV": "production", "SECRET_KEY": STRONG_SECRET, "DATABASE_URL": PG, **hosts}
            )


def test_production_with_real_settings_loads():
    settings = load_settings(
        {
            "APP_ENV": "production",
            "SECRET_KEY": STRONG_SECRET,
            "DATABASE_URL": PG,
            "TRUSTED_HOSTS": "api.example.com, .internal.example",
        }
    )
    assert settings["APP_ENV"] == "production"
    assert settings["DEBUG"] is False
    assert settings["TRUSTED_HOSTS"] == [".internal.example", "api.example.com"]


def test_production_refuses_a_short_metrics_token():
    production = {
        "APP_ENV": "production",
        "SECRET_KEY": STRONG_SECRET,
        "DATABASE_URL": PG,
        "TRUSTED_HOSTS": "api.example.com",
    }
    with pytest.raises(ConfigError, match="METRICS_TOKEN"):
        load_settings({**production, "METRICS_TOKEN": "short"})
    assert load_settings({**production, "METRICS_TOKEN": "t" * 32})["METRICS_TOKEN"] == "t" * 32
    assert load_settings(production)["METRICS_TOKEN"] == ""  # off


def test_otlp_endpoint_loses_its_trailing_slash():
    endpoint = load_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"})
    assert endpoint["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector:4318"


def test_trusted_hosts_default_to_this_machine_and_star_trusts_any():
    assert load_settings({})["TRUSTED_HOSTS"] == ["localhost", "127.0.0.1"]
    assert load_settings({"TRUSTED_HOSTS": "*"})["TRUSTED_HOSTS"] is None


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgresql://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_database_urls_use_psycopg_3(given, expected):
    assert load_settings({"DATABASE_URL": given})["SQLALCHEMY_DATABASE_URI"] == expected


@pytest.mark.parametrize(
    "environ",
    [
        {"APP_ENV": "staging"},
        {"API_PREFIX": "api"},
        {"API_PREFIX": "/api/"},
        {"LOG_JSON": "maybe"},
        {"MAX_CONTENT_LENGTH": "0"},
        {"MAX_CONTENT_LENGTH": "lots"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"},
    ],
)
def test_nonsense_settings_are_refused(environ):
    with pytest.raises((ConfigError, ValueError)):
        load_settings(environ)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("JOB_RETENTION_DAYS", "-1"),
        ("JOB_RETENTION_DAYS", "thirty"),
        ("WEBHOOK_RETENTION_DAYS", "1.5"),
        ("WEBHOOK_FAILED_RETENTION_DAYS", "36501"),
        ("PRUNE_INTERVAL_SECONDS", "-5"),
        ("PRUNE_INTERVAL_SECONDS", "nan"),
        ("PRUNE_BATCH_SIZE", "0"),
        ("PRUNE_BATCH_SIZE", "100001"),
    ],
)
def test_retention_settings_are_refused_with_their_name(variable, value):
    with pytest.raises(ConfigError, match=variable):
        load_settings({"APP_ENV": "testing", variable: value})


def test_retention_settings_default_to_the_documented_values():
    config = load_settings({"APP_ENV": "testing"})
    assert (config["JOB_RETENTION_DAYS"], config["WEBHOOK_RETENTION_DAYS"]) == (30, 30)
    assert config["WEBHOOK_FAILED_RETENTION_DAYS"] == 90
    assert (config["PRUNE_INTERVAL_SECONDS"], config["PRUNE_BATCH_SIZE"]) == (300.0, 1000)
    zero = load_settings(
        {"APP_ENV": "testing", "JOB_RETENTION_DAYS": "0", "PRUNE_INTERVAL_SECONDS": "0"}
    )
    assert (zero["JOB_RETENTION_DAYS"], zero["PRUNE_INTERVAL_SECONDS"]) == (0, 0.0)


@pytest.mark.parametrize("value", ["0", "-1", "59", "2592001", "1.5", "a day"])
def test_an_idempotency_ttl_out_of_bounds_is_one_line_naming_it(value):
    """At 0 or below a retry after the first answer would create a second resource."""
    with pytest.raises(ConfigError) as refused:
        load_settings({"APP_ENV": "testing", "IDEMPOTENCY_TTL_SECONDS": value})
    assert str(refused.value) == (
        f"IDEMPOTENCY_TTL_SECONDS must be a number from 60 to 2592000, not {value!r}"
    )


@pytest.mark.parametrize(
    ("value", "seconds"), [("60", 60), (" 86400 ", 86400), ("2592000", 2592000)]
)
def test_an_idempotency_ttl_from_a_minute_to_30_days_is_taken(value, seconds):
    config = load_settings({"APP_ENV": "testing", "IDEMPOTENCY_TTL_SECONDS": value})
    assert config["IDEMPOTENCY_TTL_SECONDS"] == seconds
    assert load_settings({"APP_ENV": "testing"})["IDEMPOTENCY_TTL_SECONDS"] == 86400


@pytest.mark.parametrize("value", ["0", "-3", "10001", "many"])
def test_api_keys_per_user_out_of_bounds_is_refused_naming_it(value):
    with pytest.raises(ConfigError, match=r"^API_KEYS_PER_USER must be a number from 1 to 10000"):
        load_settings({"APP_ENV": "testing", "API_KEYS_PER_USER": value})


def test_api_keys_per_user_defaults_to_50():
    assert load_settings({"APP_ENV": "testing"})["API_KEYS_PER_USER"] == 50
    assert load_settings({"API_KEYS_PER_USER": "3"})["API_KEYS_PER_USER"] == 3


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL"),
        ({"DATABASE_URL": "mysql://app:hunter2@db/app"}, "DATABASE_URL"),  # no driver here
        ({"REDIS_URL": "redis://127.0.0.1:6379/0"}, "REDIS_URL"),
        ({"RATELIMIT_STORAGE_URI": "sql://"}, "RATELIMIT_STORAGE_URI"),
        ({"MAX_CONTENT_LENGTH": "lots"}, "MAX_CONTENT_LENGTH"),
        ({"LOG_JSON": "maybe"}, "LOG_JSON"),
        ({"ADMIN_EMAIL": "admin@example.com"}, "ADMIN_PASSWORD"),
        ({"ADMIN_PASSWORD": "long enough pw"}, "ADMIN_EMAIL"),
    ],
)
def test_a_refused_setting_is_one_line_naming_the_variable(environ, variable):
    with pytest.raises(ConfigError) as refused:
        load_settings(environ)
    message = str(refused.value)
    assert variable in message
    assert "\n" not in message
    assert "hunter2" not in message  # a URL's password is never repeated


@pytest.mark.parametrize("value", ["0", "0.05", "301", "soon", "nan"])
def test_the_auth_cache_max_age_is_bounded(value):
    refused = re.escape("AUTH_CACHE_MAX_AGE must be a number from 0.1 to 300")
    with pytest.raises(ConfigError, match=refused):
        load_settings({"APP_ENV": "testing", "AUTH_CACHE_MAX_AGE": value})


def test_the_auth_cache_max_age_defaults_to_five_seconds():
    assert load_settings({})["AUTH_CACHE_MAX_AGE"] == 5.0
    assert load_settings({"AUTH_CACHE_MAX_AGE": "0.5"})["AUTH_CACHE_MAX_AGE"] == 0.5


@pytest.mark.parametrize("profile", ["development", "testing", "production"])
def test_redis_url_is_refused_now_that_revoked_tokens_live_in_the_database(profile):
    """An operator who set it is told why it is no longer read, in one line, rather than
    left to believe revocations are in Redis."""
    with pytest.raises(ConfigError) as refused:
        load_settings({"APP_ENV": profile, "REDIS_URL": "redis://cache:6379/1"})
    assert str(refused.value) == (
        "REDIS_URL is no longer read: revoked tokens live in the database, which keeps them "
        "through any Redis restart; unset it, then copy those Redis holds with "
        "`flask auth import-revocations <its URL>` (rate limits in Redis: RATELIMIT_STORAGE_URI)"
    )


def test_an_empty_redis_url_sets_nothing_and_is_let_be():
    settings = load_settings({"REDIS_URL": " "})
    assert "REDIS_URL" not in settings


def test_rate_limits_are_counted_in_the_database_by_default():
    assert load_settings({})["RATELIMIT_STORAGE_URI"] == "database://"
    assert load_settings({"APP_ENV": "testing"})["RATELIMIT_STORAGE_URI"] == "database://"


@pytest.mark.parametrize("value", ["0", "0.5", "3601", "soon"])
def test_resend_unclaimed_seconds_is_refused_out_of_range(value):
    with pytest.raises(ConfigError, match="RESEND_UNCLAIMED_SECONDS"):
        load_settings({"APP_ENV": "testing", "RESEND_UNCLAIMED_SECONDS": value})


def test_redis_gives_back_what_a_dead_worker_held_after_the_resend_bound(make_app):
    """Redis hands an unacknowledged message to another worker once it is
    RESEND_UNCLAIMED_SECONDS old, found by a sweep every RELAY_INTERVAL_SECONDS (kombu's
    own defaults: an hour, and a sweep about every 100 s)."""
    app = make_app(
        DATABASE_URL="sqlite://",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/0",
        RESEND_UNCLAIMED_SECONDS="20",
        RELAY_INTERVAL_SECONDS="4",
    )
    options = app.extensions["celery"].conf.broker_transport_options
    assert options["visibility_timeout"] == 20
    assert (options["unacked_restore_interval"], options["unacked_restore_throttle"]) == (4, 1)
    assert load_settings({"APP_ENV": "development"})["RESEND_UNCLAIMED_SECONDS"] == 30


def test_nothing_leaks_in_from_the_machine_when_a_dict_is_given(tmp_path, monkeypatch):
    """A test's dict is the whole environment: not os.environ, not a .env file beside it."""
    monkeypatch.setenv("API_PREFIX", "/from-os-environ")
    monkeypatch.setenv("SERVER_THREADS", "0")  # would be refused, were it read
    monkeypatch.delenv("APP_ENV", raising=False)
    (tmp_path / ".env").write_text("API_PREFIX=/from-dotenv\nLOG_JSON=maybe\n")
    monkeypatch.chdir(tmp_path)
    settings = load_settings({"APP_ENV": "testing"})
    assert (settings["API_PREFIX"], settings["SERVER_THREADS"]) == ("/api", 4)
    with pytest.raises(ConfigError, match=r"^SERVER_THREADS must be a number from 1 to 256"):
        load_settings()  # os.environ, when no dict is given


@pytest.mark.parametrize(
    ("variable", "value", "refusal"),
    [
        ("LOG_JSON", "maybe", "LOG_JSON must be true or false, not 'maybe'"),
        ("REGISTRATION", "closed", "REGISTRATION must be 'open' or 'admin', not 'closed'"),
        (
            "LOG_LEVEL",
            "loud",
            "LOG_LEVEL must be one of 'DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL', not 'loud'",
        ),
        ("LLM_MODEL", "m" * 201, "LLM_MODEL must be at most 200 characters"),
        ("MAX_CONTENT_LENGTH", "0", "MAX_CONTENT_LENGTH must be a positive number, not '0'"),
        ("LLM_TIMEOUT", "3601", "LLM_TIMEOUT must be a positive number up to 3600, not '3601'"),
        (
            "PROXY_FIX_X_FOR",
            "-1",
            "PROXY_FIX_X_FOR must be a number of proxies, 0 or more, not '-1'",
        ),
        ("DB_POOL_SIZE", "many", "DB_POOL_SIZE must be a number, 1 or more, not 'many'"),
        (
            "JOB_RETENTION_DAYS",
            "1.5",
            "JOB_RETENTION_DAYS must be a number of days from 0 to 36500, not '1.5'",
        ),
        (
            "CONSOLE_SESSION_LIFETIME",
            "59",
            "CONSOLE_SESSION_LIFETIME must be a number from 60 to 604800, not '59'",
        ),
        (
            "JWT_ACCESS_TOKEN_EXPIRES",
            "an hour",
            "JWT_ACCESS_TOKEN_EXPIRES must be a positive number, not 'an hour'",
        ),
        (
            "BODY_READ_TIMEOUT",
            "inf",
            "BODY_READ_TIMEOUT must be a number from 0.1 to 600, not 'inf'",
        ),
    ],
)
def test_a_value_outside_its_declaration_is_refused_in_words_made_from_it(variable, value, refusal):
    """The type and bounds declared for a setting make the line that refuses it."""
    with pytest.raises(ConfigError) as refused:
        load_settings({"APP_ENV": "testing", variable: value})
    assert str(refused.value) == refusal


def test_values_are_read_as_the_declaration_types_them():
    settings = load_settings(
        {
            "LOG_LEVEL": " warning ",
            "REGISTRATION": "Admin",
            "LOG_JSON": "",
            "JWT_ACCESS_TOKEN_EXPIRES": "60",
            "WEBHOOK_UNSIGNED_SOURCES": "github, ,stripe",
            "WEBHOOK_SECRETS": '{"github": "whsec_abc"}',
            "DATABASE_URL": "",
        }
    )
    assert (settings["LOG_LEVEL"], settings["REGISTRATION"]) == ("WARNING", "admin")
    assert settings["LOG_JSON"] is False  # empty is false, as it always was
    assert settings["JWT_ACCESS_TOKEN_EXPIRES"] == timedelta(seconds=60)
    assert settings["WEBHOOK_UNSIGNED_SOURCES"] == frozenset({"github", "stripe"})
    assert settings["WEBHOOK_SECRETS"] == {"github": "whsec_abc"}
    assert settings["SQLALCHEMY_DATABASE_URI"] is None


def test_each_profile_changes_only_declared_settings_and_keeps_flasks_constants():
    for profile in PROFILES.values():
        assert set(profile.defaults) <= set(Config.model_fields), profile.__name__
    development, production = (
        load_settings({}),
        load_settings(
            {
                "APP_ENV": "production",
                "SECRET_KEY": STRONG_SECRET,
                "DATABASE_URL": PG,
                "TRUSTED_HOSTS": "api.example.com",
            }
        ),
    )
    assert development["WEBHOOK_UNSIGNED_SOURCES"] == frozenset({"default"})
    assert (development["LOG_JSON"], production["LOG_JSON"]) == (False, True)
    assert (development["CONSOLE_COOKIE_SECURE"], production["CONSOLE_COOKIE_SECURE"]) == (
        False,
        True,
    )
    assert load_settings({"APP_ENV": "testing"})["PASSWORD_HASH_MEMORY_COST"] == 1024
    assert production["JWT_TOKEN_LOCATION"] == ["headers"]
    assert production["RATELIMIT_HEADERS_ENABLED"] is False
    assert "defaults" not in production


def test_every_setting_is_described():
    assert [name for name, field in Config.model_fields.items() if not field.description] == []


def test_instance_config_overrides_from_the_instance_folder_only(make_app, tmp_path, monkeypatch):
    """`instance/config.py` overrides the settings where INSTANCE_CONFIG is on; the
    package's own config.py (the declaration) is never read as one."""
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    (tmp_path / "config.py").write_text("API_KEYS_PER_USER = 7\n")
    app = make_app(DATABASE_URL="sqlite://", INSTANCE_CONFIG="true")
    assert app.config["API_KEYS_PER_USER"] == 7
    assert "DEFAULT_SECRET_KEY" not in app.config
    assert make_app(DATABASE_URL="sqlite://").config["API_KEYS_PER_USER"] == 50  # testing: off
