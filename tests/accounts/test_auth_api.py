"""The accounts API: registration and tokens (DESIGN.md, REST contract)."""

from __future__ import annotations

import pytest
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
