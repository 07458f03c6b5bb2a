from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from flashsale_project.settings.environment import env, redis_db_url

ROOT = Path(__file__).resolve().parents[2]


def test_redis_db_url_swaps_only_the_database_number() -> None:
    assert redis_db_url("redis://127.0.0.1:6379/0", 2) == "redis://127.0.0.1:6379/2"
    assert redis_db_url("redis://127.0.0.1:6379", 1) == "redis://127.0.0.1:6379/1"
    assert redis_db_url("redis://:secret@cache.internal:6380/5", 1) == "redis://:secret@cache.internal:6380/1"


def test_a_malformed_boolean_or_integer_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEBUG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="DEBUG='maybe' is not a boolean"):
        env.bool("DEBUG", default=False)
    monkeypatch.setenv("EMAIL_PORT", "twenty-five")
    with pytest.raises(ImproperlyConfigured, match="EMAIL_PORT='twenty-five' is not an integer"):
        env.int("EMAIL_PORT", default=25)


def _settings_in_child(module: str, **env: str) -> subprocess.CompletedProcess[str]:
    child_env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "ALLOWED_HOSTS"}}
    child_env.update(env, DJANGO_SETTINGS_MODULE=module)
    code = "from django.conf import settings as s; print(s.DEBUG, s.ALLOWED_HOSTS, s.SESSION_COOKIE_SECURE)"
    return subprocess.run(
        [sys.executable, "-c", code], env=child_env, cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_production_settings_refuse_to_start_without_a_secret_key() -> None:
    result = _settings_in_child("flashsale_project.settings.production")
    assert result.returncode != 0
    assert "Set the SECRET_KEY environment variable." in result.stderr


def test_production_settings_refuse_to_start_without_the_host_names() -> None:
    result = _settings_in_child("flashsale_project.settings.production", SECRET_KEY="x" * 50)
    assert result.returncode != 0
    assert "Set the ALLOWED_HOSTS environment variable." in result.stderr


def test_production_settings_default_to_safe_values() -> None:
    result = _settings_in_child("flashsale_project.settings.production", SECRET_KEY="x" * 50, ALLOWED_HOSTS="shop.test")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "['shop.test']", "True"]


def test_a_log_format_or_level_that_is_none_is_refused_by_name() -> None:
    result = _settings_in_child(
        "flashsale_project.settings.production", SECRET_KEY="x", ALLOWED_HOSTS="a", LOG_FORMAT="xml"
    )
    assert result.returncode != 0
    assert "LOG_FORMAT='xml' is not one of json, console." in result.stderr
    result = _settings_in_child(
        "flashsale_project.settings.production", SECRET_KEY="x", ALLOWED_HOSTS="a", LOG_LEVEL="LOUD"
    )
    assert "LOG_LEVEL='LOUD' is not a level" in result.stderr


def test_production_settings_read_the_environment() -> None:
    result = _settings_in_child(
        "flashsale_project.settings.production", SECRET_KEY="x" * 50, ALLOWED_HOSTS="shop.example.com, cdn.example.com"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "['shop.example.com',", "'cdn.example.com']", "True"]
