"""The database's constraints on orders."""

from __future__ import annotations

import uuid

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from orders.models import Order, OrderStatus
from tests.factories import make_sale, make_user

pytestmark = pytest.mark.django_db


def test_the_database_allows_one_order_per_user_per_sale() -> None:
    sale = make_sale(warm=False)
    user = make_user()
    Order.objects.create(id=uuid.uuid4(), sale=sale, user=user, unit_price=sale.price, created_at=timezone.now())

    with pytest.raises(IntegrityError, match="order_one_per_user_per_sale"), transaction.atomic():
        Order.objects.create(id=uuid.uuid4(), sale=sale, user=user, unit_price=sale.price, created_at=timezone.now())

    assert Order.objects.filter(sale=sale, user=user).count() == 1


def test_a_paid_order_needs_its_payment_time() -> None:
    sale = make_sale(warm=False)
    with pytest.raises(IntegrityError, match="order_paid_has_paid_at"), transaction.atomic():
        Order.objects.create(
            sale=sale, user=make_user(), unit_price=sale.price, status=OrderStatus.PAID, created_at=timezone.now()
        )
