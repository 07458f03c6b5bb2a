"""Login and registration throttles (docs/accounts.md, "Throttles"): per address and per
account, 429 with Retry-After in the contract's body, counted in Redis so every web process
shares one count, each one set or switched off by its setting."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from accounts.throttles import login_attempt_slowed
from core.throttle import Rate, rate_parse
from tests.factories import make_user
from tests.processes import Child

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests-1"


def _token(client: Client, username: str, password: str) -> Any:
    return client.post(
        "/api/auth/token/", {"username": username, "password": password}, content_type="application/json"
    )


def _register(client: Client, username: str) -> Any:
    body = {"username": username, "password": "correct-horse-42"}
    return client.post("/api/auth/register/", body, content_type="application/json")


def _assert_throttled(response: object, reason: str, window: int) -> None:
    assert response.status_code == 429  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body["status"] == "RATE_LIMITED"
    assert body["reason"] == reason
    assert body["detail"].startswith("Too many ")
    assert 1 <= int(response.headers["Retry-After"]) <= window  # type: ignore[attr-defined]


@pytest.fixture
def loose(settings: SettingsWrapper) -> SettingsWrapper:
    """Every throttle off; a test turns on the one it is about."""
    for name in (
        "LOGIN_THROTTLE_IP",
        "LOGIN_THROTTLE_ACCOUNT",
        "LOGIN_THROTTLE_ACCOUNT_ANY",
        "REGISTER_THROTTLE_IP",
        "REGISTER_THROTTLE_ACCOUNT",
    ):
        setattr(settings, name, "off")
    settings.LOGIN_SLOW_SECONDS = 0.5
    return settings


def test_login_is_throttled_per_address_even_for_the_right_password(client: Client, loose: SettingsWrapper) -> None:
    loose.LOGIN_THROTTLE_IP = "3/min"
    user = make_user()

    answers = [_token(client, f"guess{n}", "nope").status_code for n in range(3)]
    refused = _token(client, user.username, PASSWORD)

    assert answers == [400, 400, 400]
    _assert_throttled(refused, "ip", 60)
    other_address = client.post(
        "/api/auth/token/",
        {"username": user.username, "password": PASSWORD},
        content_type="application/json",
        REMOTE_ADDR="192.0.2.7",
    )
    assert other_address.status_code == 200


def test_failed_passwords_slow_that_address_for_that_account_and_refuse_nothing(
    client: Client, loose: SettingsWrapper
) -> None:
    loose.LOGIN_THROTTLE_ACCOUNT = "2/15min"
    user, other = make_user(), make_user()

    successes = [_token(client, user.username, PASSWORD).status_code for _ in range(4)]
    failures = [_token(client, user.username.upper(), "nope").status_code for _ in range(2)]
    started = time.monotonic()
    owner_here = _token(client, user.username, PASSWORD)
    waited = time.monotonic() - started

    assert successes == [200] * 4  # a success does not count
    assert failures == [400, 400]
    assert owner_here.status_code == 200  # answered later, not refused
    assert waited >= loose.LOGIN_SLOW_SECONDS
    assert login_attempt_slowed(client_ip="127.0.0.1", username=user.username)
    assert not login_attempt_slowed(client_ip="192.0.2.7", username=user.username)  # another address
    assert not login_attempt_slowed(client_ip="127.0.0.1", username=other.username)  # another account


def test_guessing_one_account_from_many_addresses_slows_it_for_everyone_and_refuses_nothing(
    client: Client, loose: SettingsWrapper
) -> None:
    loose.LOGIN_THROTTLE_ACCOUNT = "5/15min"
    loose.LOGIN_THROTTLE_ACCOUNT_ANY = "3/15min"
    user = make_user()

    for n in range(3):
        wrong = client.post(
            "/api/auth/token/",
            {"username": user.username, "password": "nope"},
            content_type="application/json",
            REMOTE_ADDR=f"198.51.100.{n + 1}",
        )
        assert wrong.status_code == 400
    owner = client.post(
        "/api/auth/token/",
        {"username": user.username, "password": PASSWORD},
        content_type="application/json",
        REMOTE_ADDR="192.0.2.99",
    )

    assert owner.status_code == 200
    assert login_attempt_slowed(client_ip="192.0.2.99", username=user.username)


def test_registration_is_throttled_per_address(client: Client, loose: SettingsWrapper) -> None:
    loose.REGISTER_THROTTLE_IP = "2/hour"

    created = [_register(client, f"newcomer{n}").status_code for n in range(2)]
    refused = _register(client, "newcomer9")

    assert created == [201, 201]
    _assert_throttled(refused, "ip", 3600)
    assert not get_user_model().objects.filter(username="newcomer9").exists()


def test_registration_is_throttled_per_username(client: Client, loose: SettingsWrapper) -> None:
    loose.REGISTER_THROTTLE_ACCOUNT = "2/hour"

    first, taken = _register(client, "ada"), _register(client, "ADA")
    refused = _register(client, "Ada")

    assert (first.status_code, taken.status_code) == (201, 400)
    _assert_throttled(refused, "account", 3600)
    assert _register(client, "grace").status_code == 201


def test_the_admin_login_after_failures_is_slower_and_still_lets_the_admin_in(
    client: Client, loose: SettingsWrapper
) -> None:
    loose.LOGIN_THROTTLE_ACCOUNT = "2/15min"
    get_user_model().objects.create_superuser("boss", "boss@example.com", PASSWORD)

    wrong = [client.post("/admin/login/", {"username": "boss", "password": "nope"}).status_code for _ in range(2)]
    started = time.monotonic()
    right = client.post("/admin/login/", {"username": "boss", "password": PASSWORD})
    waited = time.monotonic() - started

    assert wrong == [200, 200]  # the form again, with its error
    assert right.status_code == 302
    assert waited >= loose.LOGIN_SLOW_SECONDS
    assert client.get("/admin/").wsgi_request.user.is_authenticated


def test_the_storefront_login_and_sign_up_are_throttled_per_address(client: Client, loose: SettingsWrapper) -> None:
    loose.LOGIN_THROTTLE_IP = "1/min"
    loose.REGISTER_THROTTLE_IP = "1/hour"
    user = make_user()

    first = client.post("/accounts/login/", {"username": user.username, "password": "nope"})
    refused = client.post("/accounts/login/", {"username": user.username, "password": PASSWORD})
    signup = {"username": "walkin", "email": "w@example.com", "password1": "correct-horse-42"}
    signups = [client.post("/accounts/signup/", {**signup, "password2": "correct-horse-42"}) for _ in range(2)]

    assert first.status_code == 200
    assert refused.status_code == 429
    assert "Too many login attempts" in refused.content.decode()
    assert signups[1].status_code == 429
    assert 1 <= int(signups[1]["Retry-After"]) <= 3600


def test_a_throttle_switched_off_never_refuses(client: Client, loose: SettingsWrapper) -> None:
    answers = {_token(client, "someone", "nope").status_code for _ in range(30)}
    assert answers == {400}


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("60/min", Rate(60, 60)),
        ("10/15min", Rate(10, 900)),
        ("20/hour", Rate(20, 3600)),
        ("5/30s", Rate(5, 30)),
        ("100/days", Rate(100, 86400)),
        ("off", None),
        ("0", None),
        ("0/min", None),
    ],
)
def test_rates_are_read_as_documented(text: str, rate: Rate | None) -> None:
    assert rate_parse(text) == rate


@pytest.mark.parametrize("text", ["ten/min", "10/fortnight", "10/0min", "10"])
def test_a_malformed_rate_names_its_setting(text: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="LOGIN_THROTTLE_IP="):
        rate_parse(text, setting="LOGIN_THROTTLE_IP")


def test_the_default_account_throttle_is_shared_by_a_servers_processes(web_server: Child) -> None:
    # Given the suite's granian server (two worker processes) with the default throttles:
    # LOGIN_THROTTLE_ACCOUNT is 10 failed logins per 15 minutes from one address.
    body = {"username": f"victim-of-guessing-{time.time_ns()}", "password": "nope"}
    with httpx.Client(base_url=web_server.url, timeout=30) as http:
        # When an account's password is guessed 10 times (requests spread over both processes)
        guesses = [http.post("/api/auth/token/", json=body, headers={"Connection": "close"}) for _ in range(10)]
        started = time.monotonic()
        later = http.post("/api/auth/token/", json=body)
        waited = time.monotonic() - started

    # Then the next guess is answered, LOGIN_SLOW_SECONDS later, whichever process receives it
    assert [guess.status_code for guess in guesses] == [400] * 10
    assert later.status_code == 400
    assert waited >= 2.0
    assert login_attempt_slowed(client_ip="127.0.0.1", username=body["username"])
