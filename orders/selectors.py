from __future__ import annotations

import uuid

from django.db.models import QuerySet

from .models import Order


def orders_of_user(*, user_id: int) -> QuerySet[Order]:
    """The user's orders, newest first; a rehearsal's shadow orders are no one's to see."""
    orders = Order.objects.filter(user_id=user_id, sale__rehearsal_of__isnull=True)
    return orders.select_related("sale__product").order_by("-created_at")


def order_of_user(*, user_id: int, order_id: str) -> Order | None:
    """The order if it belongs to the user; None for a stranger's order or a bad id alike."""
    try:
        parsed = uuid.UUID(order_id)
    except ValueError:
        return None
    return orders_of_user(user_id=user_id).filter(id=parsed).first()
