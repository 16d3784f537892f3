"""Profiles, environment overrides, and what production refuses (PRODUCT.md §3)."""

from __future__ import annotations

import pytest

from backoffice.config import DEFAULT_SECRET_KEY, ConfigError, load_settings

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
