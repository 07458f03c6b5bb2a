"""The rest of the REST contract: registration, tokens, sales, orders, the schema."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from orders.drain import sale_orders_drain
from sales.purchase import purchase_attempt
from tests.factories import auth, make_sale, make_shopper, make_user

pytestmark = pytest.mark.django_db


def test_register_answers_201_with_a_working_token(client: Client) -> None:
    response = client.post(
        "/api/auth/register/",
        {"username": "ada", "password": "correct-horse-42", "email": "ada@example.com"},
        content_type="application/json",
    )

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "username", "token"}
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


def test_token_answers_the_same_token_for_good_credentials_and_400_otherwise(client: Client) -> None:
    user, token = make_shopper(password="correct-horse-42")
    good = client.post(
        "/api/auth/token/", {"username": user.username, "password": "correct-horse-42"}, content_type="application/json"
    )
    bad = client.post(
        "/api/auth/token/", {"username": user.username, "password": "nope"}, content_type="application/json"
    )
    malformed = client.post("/api/auth/token/", "{", content_type="application/json")

    assert good.status_code == 200
    assert good.json() == {"token": token}
    assert bad.status_code == 400
    assert bad.json() == {"status": "INVALID_REQUEST", "detail": "Unknown username or wrong password."}
    assert malformed.status_code == 400
    assert malformed.json()["status"] == "INVALID_REQUEST"


def test_sales_list_and_detail_follow_the_contract(client: Client) -> None:
    sale = make_sale(stock=4, starts_in=-5)
    purchase_attempt(sale_id=sale.pk, user_id=make_user().pk)
    upcoming = make_sale(stock=2, starts_in=600)

    listed = client.get("/api/sales/").json()
    detail = client.get(f"/api/sales/{sale.pk}/").json()

    assert [entry["id"] for entry in listed] == [sale.pk, upcoming.pk]
    assert set(listed[0]) == {
        "id", "product", "price", "total_stock", "remaining_stock", "starts_at", "ends_at", "status",
    }  # fmt: skip
    assert listed[0]["product"] == {
        "id": sale.product.pk,
        "slug": sale.product.slug,
        "name": sale.product.name,
        "description": sale.product.description,
    }
    assert (listed[0]["remaining_stock"], listed[0]["status"], listed[0]["price"]) == (3, "live", "1.00")
    assert (listed[1]["remaining_stock"], listed[1]["status"]) == (2, "scheduled")
    assert detail["status"] == "live"
    server_time = parse_datetime(detail["server_time"])
    assert server_time is not None and server_time.utcoffset() == timedelta(0)
    assert abs((server_time - timezone.now()).total_seconds()) < 60
    assert listed[0]["starts_at"].endswith("Z") or listed[0]["starts_at"].endswith("+00:00")


def test_sale_status_reads_sold_out_and_ended(client: Client) -> None:
    sold = make_sale(stock=1)
    purchase_attempt(sale_id=sold.pk, user_id=make_user().pk)
    over = make_sale(starts_in=-120, duration=60)

    assert client.get(f"/api/sales/{sold.pk}/").json()["status"] == "sold_out"
    assert client.get(f"/api/sales/{over.pk}/").json()["status"] == "ended"


def test_an_unknown_sale_detail_answers_404(client: Client) -> None:
    response = client.get("/api/sales/424242/")
    assert response.status_code == 404
    assert response.json()["status"] == "NOT_FOUND"


def test_orders_show_the_callers_own_orders_only(client: Client) -> None:
    sale = make_sale(stock=5)
    mine, my_token = make_shopper()
    theirs, _ = make_shopper()
    my_order = purchase_attempt(sale_id=sale.pk, user_id=mine.pk).order_id
    their_order = purchase_attempt(sale_id=sale.pk, user_id=theirs.pk).order_id
    sale_orders_drain(sale_id=sale.pk)

    listed = client.get("/api/orders/", headers=auth(my_token)).json()
    own = client.get(f"/api/orders/{my_order}/", headers=auth(my_token))
    foreign = client.get(f"/api/orders/{their_order}/", headers=auth(my_token))
    garbage = client.get("/api/orders/not-a-uuid/", headers=auth(my_token))
    anonymous = client.get("/api/orders/")

    assert [order["id"] for order in listed] == [my_order]
    assert set(listed[0]) == {"id", "sale_id", "product", "unit_price", "status", "created_at", "paid_at"}
    assert own.status_code == 200
    assert own.json()["status"] == "PENDING"
    assert foreign.status_code == 404
    assert foreign.json() == {"status": "NOT_FOUND", "detail": "You have no order with this id."}
    assert garbage.status_code == 404
    assert anonymous.status_code == 401
    assert anonymous.json()["status"] == "UNAUTHENTICATED"
    assert uuid.UUID(their_order)


def test_the_schema_is_openapi_3_and_describes_every_operation(client: Client) -> None:
    response = client.get("/api/schema/")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    operations = {(path, method) for path, item in schema["paths"].items() for method in item}
    assert operations >= {
        ("/api/auth/register/", "post"),
        ("/api/auth/token/", "post"),
        ("/api/sales/", "get"),
        ("/api/sales/{sale_id}/", "get"),
        ("/api/sales/{sale_id}/challenge/", "post"),
        ("/api/sales/{sale_id}/purchase/", "post"),
        ("/api/orders/", "get"),
        ("/api/orders/{order_id}/", "get"),
    }
    purchase = schema["paths"]["/api/sales/{sale_id}/purchase/"]["post"]
    assert set(purchase["responses"]) >= {"201", "400", "401", "403", "404", "409", "429", "503"}
    assert any(parameter["name"] == "Idempotency-Key" for parameter in purchase["parameters"])
