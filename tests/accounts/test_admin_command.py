"""``manage.py flashsale admin``: the first administrator, and a new password for it."""

from __future__ import annotations

import io
import json

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def _admin(*args: str) -> dict:
    out = io.StringIO()
    call_command("flashsale", "admin", *args, "--json", stdout=out)
    return json.loads(out.getvalue())


def test_the_first_run_creates_a_superuser_and_the_next_changes_its_password() -> None:
    first = _admin("boss", "--email", "boss@example.com")
    second = _admin("boss")

    assert first["created"] is True and second["created"] is False
    assert first["password"] != second["password"] and len(second["password"]) >= 20
    user = get_user_model().objects.get(username="boss")
    assert (user.is_superuser, user.is_staff, user.is_active, user.email) == (True, True, True, "boss@example.com")
    assert authenticate(username="boss", password=first["password"]) is None
    assert authenticate(username="boss", password=second["password"]) == user


def test_the_command_says_the_password_once_in_words() -> None:
    out = io.StringIO()
    call_command("flashsale", "admin", "chief", stdout=out)
    printed = out.getvalue()

    [password_line] = [line for line in printed.splitlines() if "password:" in line]
    password = password_line.split("password:", 1)[1].strip()
    assert "Administrator 'chief' created." in printed
    assert authenticate(username="chief", password=password) is not None
