from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from orders.models import Order, OrderStatus
from sales.models import FlashSale
from tests.factories import make_product, make_sale, make_user

pytestmark = pytest.mark.django_db


def test_every_migration_is_applied_and_models_match_them() -> None:
    executor = MigrationExecutor(connection)
    unapplied = executor.migration_plan(executor.loader.graph.leaf_nodes())
    assert unapplied == []
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


def _sale_row(**overrides: object) -> FlashSale:
    now = timezone.now()
    values: dict[str, object] = {
        "product": make_product(),
        "price": Decimal("1.00"),
        "total_stock": 10,
        "starts_at": now,
        "ends_at": now + timedelta(hours=1),
    }
    values.update(overrides)
    return FlashSale(**values)


@pytest.mark.parametrize(
    ("overrides", "constraint"),
    [
        ({"total_stock": 0}, "flashsale_stock_positive"),
        ({"ends_at": timezone.now() - timedelta(days=1)}, "flashsale_ends_after_start"),
        ({"price": Decimal("-1.00")}, "flashsale_price_not_negative"),
        ({"per_user_limit": 2}, "flashsale_one_unit_per_buyer"),
        ({"pow_difficulty": 33}, "flashsale_pow_difficulty_max_32"),
        ({"bucket_capacity": 0}, "flashsale_bucket_capacity_positive"),
        ({"bucket_refill_per_second": 0}, "flashsale_bucket_refill_positive"),
    ],
)
def test_the_database_rejects_a_sale_that_breaks_a_constraint(overrides: dict[str, object], constraint: str) -> None:
    sale = _sale_row(**overrides)
    with pytest.raises(IntegrityError, match=constraint), transaction.atomic():
        sale.save()
    assert FlashSale.objects.count() == 0


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


def test_model_validation_explains_a_sale_that_ends_before_it_starts() -> None:
    sale = _sale_row(ends_at=timezone.now() - timedelta(hours=2))
    with pytest.raises(ValidationError) as error:
        sale.full_clean()
    assert "flashsale_ends_after_start" in str(error.value)
