"""Writes of the orders app after the win: confirmation emails, payment, cancellation and
the payment window. Moving won orders in is ``drain``; checking both sides agree is
``reconciliation``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from core.errors import ApplicationError
from sales import inventory
from sales.models import FlashSale

from .models import Order, OrderStatus, WebhookEventType
from .webhooks import events_record

logger = logging.getLogger(__name__)


def confirmation_message_id(order_id: object) -> str:
    """The one Message-ID of an order's confirmation, whichever worker sends it, however often."""
    domain = settings.DEFAULT_FROM_EMAIL.rpartition("@")[2].strip(" >") or "flashsale.invalid"
    return f"<order-{order_id}.confirmation@{domain}>"


def order_confirmations_send(*, order_ids: Sequence[str]) -> int:
    """Email each order's buyer once. The row is locked while its mail goes out and marked
    sent in the same transaction: a crash between the two may send the mail again, never zero
    times (beat re-sends what stays unmarked). A resent mail is the same message: its
    Message-ID is the order's (``confirmation_message_id``), which mail systems and clients
    use to show it once. Returns how many were sent."""
    sent = 0
    for order_id in order_ids:
        with transaction.atomic():
            order = (
                Order.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("sale__product", "user")
                .filter(id=order_id, confirmation_sent_at__isnull=True)
                .first()
            )
            if order is None:
                continue
            if order.sale.rehearsal_of_id is not None:
                logger.info("order %s is a rehearsal's: no email", order.id)
            elif order.user.email:
                context = {
                    "order": order,
                    "sale": order.sale,
                    "product": order.sale.product,
                    "user": order.user,
                    **_order_links(order),
                }
                mail = EmailMultiAlternatives(
                    subject=render_to_string("emails/order_confirmation_subject.txt", context).strip(),
                    body=render_to_string("emails/order_confirmation.txt", context),
                    to=[order.user.email],
                    headers={"Message-ID": confirmation_message_id(order.id)},
                )
                mail.attach_alternative(render_to_string("emails/order_confirmation.html", context), "text/html")
                mail.send()
                sent += 1
            else:
                logger.info("order %s: buyer %s has no email address; nothing to send", order.id, order.user_id)
            order.confirmation_sent_at = timezone.now()
            order.save(update_fields=["confirmation_sent_at"])
    return sent


def _order_links(order: Order) -> dict[str, object]:
    """The email's absolute links (``FLASHSALE_SITE_URL``; none without it): the order page,
    and the pay link while payments are set up, with the deadline of the payment window."""
    site = settings.FLASHSALE_SITE_URL.rstrip("/")
    if not site:
        return {}
    links: dict[str, object] = {"order_url": site + reverse("storefront-order", args=[order.pk])}
    if settings.FLASHSALE_PAYMENT_CHECKOUT_URL:
        links["pay_url"] = site + reverse("storefront-order-pay", args=[order.pk])
        window = settings.FLASHSALE_PAYMENT_WINDOW_SECONDS
        if window > 0:
            links["pay_by"] = order.created_at + timedelta(seconds=window)
    return links


ACTIVE_STATUSES = (OrderStatus.PENDING, OrderStatus.PAID)
"""Orders that hold a unit; cancelled and expired ones gave theirs back."""


class OrderNotPending(ApplicationError):
    code = "ORDER_NOT_PENDING"
    default_detail = "Only an unpaid (pending) order can be paid, cancelled or expired."


RELEASE_EVENTS = {
    OrderStatus.CANCELLED: WebhookEventType.ORDER_CANCELLED,
    OrderStatus.EXPIRED: WebhookEventType.ORDER_EXPIRED,
}


def order_mark_paid(*, order: Order) -> Order:
    """PENDING to PAID, once; ``order.paid`` is recorded in the same transaction."""
    with transaction.atomic():
        updated = Order.objects.filter(pk=order.pk, status=OrderStatus.PENDING).update(
            status=OrderStatus.PAID, paid_at=timezone.now()
        )
        if not updated:
            raise OrderNotPending()
        events_record(order_ids=[str(order.pk)], event_type=WebhookEventType.ORDER_PAID)
    order.refresh_from_db()
    return order


def order_release(*, order: Order, status: OrderStatus) -> Order:
    """Cancel or expire an unpaid order and give its unit back to the sale.

    Redis first (stock +1, buyer moved to the returned hash, the stock-return event that
    clears every web process's sold-out marker), then the row and its ``order.expired`` or
    ``order.cancelled`` event in one transaction. A crash in between leaves a pending row
    whose unit is already back; reconciliation finishes it. Idempotent.
    """
    if status not in (OrderStatus.CANCELLED, OrderStatus.EXPIRED):
        raise ValueError(f"an order is released as cancelled or expired, not {status}")
    if order.status != OrderStatus.PENDING:
        raise OrderNotPending()
    inventory.unit_release(sale_id=order.sale_id, user_id=order.user_id, order_id=str(order.id))
    with transaction.atomic():
        if Order.objects.filter(pk=order.pk, status=OrderStatus.PENDING).update(status=status):
            events_record(order_ids=[str(order.pk)], event_type=RELEASE_EVENTS[status])
    order.refresh_from_db()
    logger.info("order %s %s; its unit is back in sale %s", order.id, status.label.lower(), order.sale_id)
    return order


def orders_expire_unpaid(*, window_seconds: int, limit: int = 1000) -> int:
    """Expire orders left unpaid longer than the payment window; their units go back."""
    cutoff = timezone.now() - timedelta(seconds=window_seconds)
    overdue = Order.objects.filter(status=OrderStatus.PENDING, created_at__lt=cutoff).order_by("created_at")[:limit]
    expired = 0
    for order in overdue:
        try:
            order_release(order=order, status=OrderStatus.EXPIRED)
        except OrderNotPending:  # Paid or cancelled meanwhile.
            continue
        expired += 1
    return expired


def confirmations_overdue(*, older_than: timedelta = timedelta(minutes=1)) -> list[str]:
    """Orders whose confirmation should have gone out by now (beat re-sends them)."""
    cutoff = timezone.now() - older_than
    return [
        str(order_id)
        for order_id in Order.objects.filter(confirmation_sent_at__isnull=True, created_at__lt=cutoff).values_list(
            "id", flat=True
        )[:1000]
    ]


def sale_orders_delete(*, sale: FlashSale) -> int:
    """Delete every order of the sale (the operator's reset of a rehearsal). Returns how many."""
    deleted, _ = Order.objects.filter(sale=sale).delete()
    return deleted
