"""Paying for a won unit: a provider interface, the built-in hosted checkout, and the signed
callback by which the shop reports the outcome.

The winner follows the pay link to ``/orders/<id>/pay/``, which asks the provider where to
send them. The built-in provider, ``HostedCheckout``, redirects to the shop's checkout page
(``FLASHSALE_PAYMENT_CHECKOUT_URL``) with the order id, a signed reference and the page to
return to. The shop then reports the outcome with ``POST /api/orders/<id>/payment/``,
signed as a Standard Webhook with the secret of an endpoint registered with ``payments``,
its body carrying the reference it was handed: a callback for another order's reference
changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol
from urllib.parse import urlencode

from django.conf import settings
from django.core import signing
from django.utils import timezone
from django.utils.module_loading import import_string
from standardwebhooks import Webhook, WebhookVerificationError

from core.errors import ApplicationError, NotFound

from .models import Order, OrderStatus, WebhookEndpoint
from .services import OrderNotPending, order_mark_paid, order_release
from .webhooks import endpoint_secrets

logger = logging.getLogger(__name__)

REFERENCE_SALT = "orders.payment-reference"


class PaymentProvider(Protocol):
    """Where a winner goes to pay. ``checkout_url`` returns the URL to redirect them to;
    the provider's shop reports the outcome through the signed payment callback."""

    def checkout_url(self, *, order: Order, reference: str, return_url: str) -> str: ...


class HostedCheckout:
    """Redirect to the shop's own checkout page with ``order_id``, ``reference`` (the signed
    return token it sends back in its callback), ``amount`` and ``return_url``."""

    def __init__(self, checkout_url: str) -> None:
        self.base = checkout_url

    def checkout_url(self, *, order: Order, reference: str, return_url: str) -> str:
        query = urlencode(
            {
                "order_id": str(order.id),
                "reference": reference,
                "amount": str(order.unit_price),
                "return_url": return_url,
            }
        )
        return f"{self.base}{'&' if '?' in self.base else '?'}{query}"


def payment_provider() -> PaymentProvider | None:
    """The configured provider, or None when payments are not set up (no pay link)."""
    if not settings.FLASHSALE_PAYMENT_CHECKOUT_URL:
        return None
    provider_class = import_string(settings.FLASHSALE_PAYMENT_PROVIDER)
    provider: PaymentProvider = provider_class(settings.FLASHSALE_PAYMENT_CHECKOUT_URL)
    return provider


def payment_reference(order: Order) -> str:
    """The signed return token handed to the checkout: the order id and an HMAC of it."""
    return signing.Signer(salt=REFERENCE_SALT).sign(str(order.id))


def payment_reference_order(reference: str) -> str | None:
    """The order id a reference was issued for; None for a forged one."""
    try:
        return signing.Signer(salt=REFERENCE_SALT).unsign(reference)
    except signing.BadSignature:
        return None


def payment_deadline(order: Order) -> datetime | None:
    """When an unpaid order expires (None: no payment window)."""
    window = settings.FLASHSALE_PAYMENT_WINDOW_SECONDS
    if window <= 0:
        return None
    return order.created_at + timedelta(seconds=window)


class SignatureInvalid(ApplicationError):
    code = "SIGNATURE_INVALID"
    default_detail = "The webhook-signature does not match this body with any payment endpoint's secret."


class SignatureExpired(ApplicationError):
    code = "SIGNATURE_EXPIRED"
    default_detail = "The webhook-timestamp is more than five minutes away from now: refused as a replay."


class PaymentReferenceInvalid(ApplicationError):
    code = "PAYMENT_REFERENCE_INVALID"
    default_detail = "This reference was not issued for this order."


class OrderExpired(ApplicationError):
    code = "ORDER_EXPIRED"
    default_detail = "The payment window of this order passed: it expired and its unit went back on sale."


def payment_callback_verify(*, body: bytes, headers: Mapping[str, str]) -> WebhookEndpoint:
    """The payment endpoint whose secret (current, or previous during a rotation's overlap)
    signed this request, checked by the Standard Webhooks library: ``SignatureExpired`` for
    a timestamp outside its tolerance (five minutes), ``SignatureInvalid`` otherwise."""
    now = timezone.now()
    wanted = {name: headers.get(name, "") for name in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    for endpoint in WebhookEndpoint.objects.filter(payments=True):
        for secret in endpoint_secrets(endpoint, now=now):
            try:
                Webhook(secret).verify(body, wanted, json_parse=False)
            except WebhookVerificationError as refused:
                if "timestamp" in str(refused):
                    raise SignatureExpired() from None
                continue
            except (ValueError, TypeError):  # A malformed signature list or body, sent by no endpoint.
                raise SignatureInvalid() from None
            return endpoint
    raise SignatureInvalid()


class PaymentOutcome(StrEnum):
    PAID = "paid"
    FAILED = "failed"


def order_payment_report(*, order_id: str, outcome: PaymentOutcome, reference: str) -> Order:
    """Apply the shop's verified report. ``paid`` moves a pending order to PAID (and
    ``order.paid`` goes out); paid again is answered with the order as it is (the shop may
    retry). ``failed`` leaves a pending order pending. An order whose payment window passed
    is expired here if beat has not yet done it: ``OrderExpired``. Anything else that is not
    pending: ``OrderNotPending``, and nothing changes."""
    if payment_reference_order(reference) != order_id:
        raise PaymentReferenceInvalid()
    order = Order.objects.filter(id=order_id).first()
    if order is None:
        raise NotFound("There is no order with this id.")
    if order.status == OrderStatus.PENDING:
        deadline = payment_deadline(order)
        if deadline is not None and timezone.now() >= deadline:
            try:
                order = order_release(order=order, status=OrderStatus.EXPIRED)
            except OrderNotPending:
                order.refresh_from_db()
    if order.status == OrderStatus.EXPIRED:
        raise OrderExpired()
    if outcome is PaymentOutcome.PAID:
        if order.status == OrderStatus.PAID:
            return order
        if order.status == OrderStatus.PENDING:
            try:
                return order_mark_paid(order=order)
            except OrderNotPending:
                order.refresh_from_db()
                if order.status == OrderStatus.PAID:
                    return order
    elif order.status == OrderStatus.PENDING:
        logger.info("order %s: the shop reports a failed payment; it stays pending", order.id)
        return order
    if order.status == OrderStatus.EXPIRED:
        raise OrderExpired()
    raise OrderNotPending(
        f"This order is {order.get_status_display().lower()}; a {outcome.value} payment changes nothing.",
        extra={"order_status": order.status},
    )
