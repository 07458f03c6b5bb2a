"""Test data, made through the services the application itself uses."""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.utils import timezone

from accounts.services import token_issue
from accounts.tokens import access_token_issue
from sales import inventory
from sales.models import FlashSale, Product
from sales.services import product_create, sale_create
from sales.warming import sale_warm

_sequence = itertools.count(1)


def make_product(**fields: object) -> Product:
    number = next(_sequence)
    values: dict[str, object] = {
        "slug": f"phone-{number}",
        "name": f"Phone {number}",
        "list_price": Decimal("799.00"),
        "description": "A phone.",
    }
    values.update(fields)
    return product_create(**values)  # type: ignore[arg-type]


def make_sale(
    *,
    stock: int = 10,
    starts_in: float = -1.0,
    duration: float = 3600.0,
    price: Decimal = Decimal("1.00"),
    warm: bool = True,
    product: Product | None = None,
    **fields: object,
) -> FlashSale:
    """A sale whose window starts ``starts_in`` seconds from now (negative: already open)."""
    starts_at = timezone.now() + timedelta(seconds=starts_in)
    sale = sale_create(
        product=product or make_product(),
        price=price,
        total_stock=stock,
        starts_at=starts_at,
        ends_at=starts_at + timedelta(seconds=duration),
        **fields,  # type: ignore[arg-type]
    )
    if warm:
        sale_warm(sale=sale)
    return sale


def make_user(*, username: str | None = None, email: str | None = None, password: str = "pw-for-tests-1") -> User:
    name = username or f"shopper{next(_sequence)}"
    return get_user_model().objects.create_user(  # type: ignore[return-value]
        username=name, email=email if email is not None else f"{name}@example.com", password=password
    )


def make_shopper(**kwargs: object) -> tuple[User, str]:
    """A user and their access token."""
    user = make_user(**kwargs)  # type: ignore[arg-type]
    return user, token_issue(user=user).token


def make_shoppers(count: int, *, prefix: str = "crowd") -> list[tuple[int, str]]:
    """Many shoppers at once (bulk inserts), as (user id, access token) pairs."""
    users_model = get_user_model()
    batch = next(_sequence)
    users = users_model.objects.bulk_create(
        [
            users_model(username=f"{prefix}{batch}-{n}", email=f"{prefix}{batch}-{n}@example.com", password="!")
            for n in range(count)
        ]
    )
    return [(user.pk, access_token_issue(user_id=user.pk).token) for user in users]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}"}


def make_wins(sale_id: int, user_ids: list[int]) -> dict[int, str]:
    """Win one unit per user through the purchase script alone, no funnel in front (for
    tests about what happens to wins); returns user -> order id."""
    won = {}
    for user_id in user_ids:
        answer = inventory.purchase_run(sale_id=sale_id, user_id=user_id, order_id=str(uuid.uuid4()))
        assert answer.status == "SUCCESS", answer
        won[user_id] = answer.order_id
    return won
