"""The accounts API: registration and tokens (docs/design.md, "Endpoints")."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from accounts.tokens import access_token_verify
from tests.factories import auth, make_shopper, make_user

pytestmark = pytest.mark.django_db


def test_register_answers_201_with_a_working_token(client: Client) -> None:
    response = client.post(
        "/api/auth/register/",
        {"username": "ada", "password": "correct-horse-42", "email": "ada@example.com"},
        content_type="application/json",
    )

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "username", "token", "expires_at"}
    assert body["username"] == "ada"
    orders = client.get("/api/orders/", headers=auth(body["token"]))
    assert orders.status_code == 200


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"username": "ada", "password": "short"}, "password"),
        ({"username": "bad name!", "password": "correct-horse-42"}, "username"),
        ({"password": "correct-horse-42"}, "username"),
        ({"username": "ada", "password": "correct-horse-42", "email": "not-an-email"}, "email"),
    ],
)
def test_register_explains_field_errors(client: Client, payload: dict, field: str) -> None:
    response = client.post("/api/auth/register/", payload, content_type="application/json")
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "INVALID_REQUEST"
    assert field in body["errors"]
    assert body["detail"].startswith(f"{field}: ")


def test_register_refuses_a_taken_username(client: Client) -> None:
    make_user(username="ada")
    response = client.post(
        "/api/auth/register/", {"username": "ADA", "password": "correct-horse-42"}, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["errors"]["username"] == ["That username is taken."]


def test_token_answers_a_working_token_for_good_credentials_and_400_otherwise(client: Client) -> None:
    user, _ = make_shopper(password="correct-horse-42")
    good = client.post(
        "/api/auth/token/", {"username": user.username, "password": "correct-horse-42"}, content_type="application/json"
    )
    bad = client.post(
        "/api/auth/token/", {"username": user.username, "password": "nope"}, content_type="application/json"
    )
    malformed = client.post("/api/auth/token/", "{", content_type="application/json")

    assert good.status_code == 200
    assert set(good.json()) == {"token", "expires_at"}
    assert access_token_verify(good.json()["token"]).user_id == user.pk
    assert bad.status_code == 400
    assert bad.json() == {"status": "INVALID_REQUEST", "detail": "Unknown username or wrong password."}
    assert malformed.status_code == 400
    assert malformed.json()["status"] == "INVALID_REQUEST"


REGISTER = {"username": "ada", "password": "correct-horse-42"}
NESTED = "[" * 30_000 + "]" * 30_000


@pytest.mark.parametrize("path", ["/api/auth/register/", "/api/auth/token/"])
@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (json.dumps({**REGISTER, "username": 12345}), {"username": ["Must be a string."]}),
        (json.dumps({**REGISTER, "password": ["correct-horse-42"]}), {"password": ["Must be a string."]}),
        (json.dumps({**REGISTER, "username": True}), {"username": ["Must be a string."]}),
        (json.dumps({**REGISTER, "is_staff": True}), {"is_staff": ["Unknown field: not accepted here."]}),
        ('{"username": "ada\\udc80", "password": "correct-horse-42"}', None),
        ('{"username": "ada", "password": "\\ud800"}', None),
        (b'{"username": "\xed\xb2\x80", "password": "x"}', None),  # a surrogate in UTF-8 bytes
        (b'{"username": "\xff\xfe", "password": "x"}', None),  # not UTF-8
        (NESTED, None),
        ('{"username": ' + NESTED + ', "password": "x"}', None),
        ('{"username": 1' + "0" * 5000 + ', "password": "x"}', None),
        ('{"username": "ada", "password": NaN}', None),
        ("x" * (70 * 1024), None),
        ("[" * 40_000 + "]" * 40_000, None),  # both: too large and too deep
    ],
)
def test_hostile_bodies_answer_the_contracts_400_and_create_nothing(
    client: Client, path: str, body: str | bytes, errors: dict | None
) -> None:
    users = get_user_model().objects.count()

    response = client.post(path, body, content_type="application/json")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    answer = response.json()
    assert answer["status"] == "INVALID_REQUEST"
    assert answer["detail"]
    if errors is not None:
        assert answer["errors"] == errors
    assert get_user_model().objects.count() == users


def test_a_body_that_is_not_json_answers_415(client: Client) -> None:
    response = client.post("/api/auth/register/", "username=ada", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert response.json()["status"] == "UNSUPPORTED_MEDIA_TYPE"
