from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db.models import QuerySet
from redis.exceptions import RedisError

from core.redis_store import inventory_redis
from core.steps import run_step
from sales import inventory

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


@dataclass(frozen=True, slots=True)
class HeldOrder:
    """The order a shopper won in a sale: its id always, its status once PostgreSQL has it."""

    order_id: str
    status: str | None


def order_held_in_sale(*, user_id: int, sale_id: int, loaded: bool) -> HeldOrder | None:
    """The shopper's order of the sale, as the sale's page shows it. Redis's buyers (and
    returned buyers) answer, in one round trip, so a win not yet drained shows too; only a
    winner costs a PostgreSQL read (the status). For a sale never ``loaded`` into Redis, or
    with Redis away, PostgreSQL answers alone. None for a shopper who holds nothing."""
    try:
        held = run_step(inventory_redis(), inventory.holders_call(sale_id, user_id))
    except RedisError:
        held, loaded = None, False
    if not held:
        if loaded:
            return None
        order = Order.objects.filter(sale_id=sale_id, user_id=user_id).only("id", "status").first()
        return None if order is None else HeldOrder(order_id=str(order.id), status=order.status)
    status = Order.objects.filter(id=held).values_list("status", flat=True).first()
    return HeldOrder(order_id=str(held), status=status)
