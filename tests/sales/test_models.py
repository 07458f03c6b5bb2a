"""The database's constraints on sales, and model validation that explains them."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from sales.models import FlashSale
from tests.factories import make_product

pytestmark = pytest.mark.django_db


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


def test_model_validation_explains_a_sale_that_ends_before_it_starts() -> None:
    sale = _sale_row(ends_at=timezone.now() - timedelta(hours=2))
    with pytest.raises(ValidationError) as error:
        sale.full_clean()
    assert "flashsale_ends_after_start" in str(error.value)
