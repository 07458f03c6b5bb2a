"""Signed webhooks to the shop's own systems, following the Standard Webhooks specification.

Recording: an order's event (``order.created`` at the drain, ``order.paid``,
``order.expired``, ``order.cancelled``) is written in the transaction that changed the order,
with one delivery row per endpoint that wants it; the delivery tasks are sent once that
transaction has committed. Nothing here runs on the purchase path: a purchase writes to
Redis only, and events are recorded by the worker that drains the sale and by whatever
changes an order afterwards.

Delivering: at least once, in event order per order and endpoint. A chain (one endpoint,
one order) is delivered by whoever holds the row lock of its first pending delivery; a
second task for the same chain finds it locked and leaves it to the holder. A failed attempt
is retried on the schedule of ``WEBHOOKS_RETRY_DELAYS_SECONDS`` and holds the order's later
events back; once the schedule is spent the delivery is a dead letter and the next one goes.
Every attempt carries the event's id as ``webhook-id`` and the same body; the timestamp and
signature are those of the attempt.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import logging
import random
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import OperationalError, transaction
from django.db.models import Count, Exists, F, Max, OuterRef
from django.db.models.functions import Coalesce
from django.utils import timezone
from standardwebhooks import Webhook

from core.errors import InvalidRequest

from . import delivery_rules
from .destinations import Destination, DestinationRefused, destination_post, destination_resolve
from .models import (
    DeliveryStatus,
    Order,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    WebhookEventType,
)

logger = logging.getLogger(__name__)

DELIVER_TASK = "orders.tasks.deliver_webhooks"
"""Sent by name (``tasks`` builds on this module, not the other way)."""
SECRET_PREFIX = "whsec_"
SECRET_BYTES = (24, 64)
"""The specification's bounds for an HMAC secret."""
COUNTDOWN_LONGEST_SECONDS = 240.0
"""A retry due sooner is sent as a delayed task; a later one is left to beat's sweep, since
the broker hands a task delayed past its visibility timeout to a second worker."""
SWEEP_GRACE = timedelta(seconds=60)
"""Beat's sweep sends a chain whose first delivery is this overdue: its own task was lost
(a worker killed before it acknowledged, a message never sent)."""
USER_AGENT = "flashsale-webhooks/1"


class WebhookSecretInvalid(InvalidRequest):
    default_detail = "A webhook secret is whsec_ followed by 24 to 64 bytes in base64."


class WebhookEventsInvalid(InvalidRequest):
    default_detail = "Name the events wanted: order.created, order.paid, order.expired, order.cancelled."


class PrivateAddressesNotPermitted(InvalidRequest):
    default_detail = "--allow-private needs WEBHOOKS_ALLOW_PRIVATE_OPT_IN (or WEBHOOKS_ALLOW_PRIVATE) in the settings."


# --- Endpoints ------------------------------------------------------------------------------


def secret_generate() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def secret_check(secret: str) -> str:
    """The secret as given, if it is the specification's ``whsec_<base64>`` of 24 to 64 bytes."""
    if not secret.startswith(SECRET_PREFIX):
        raise WebhookSecretInvalid()
    try:
        raw = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise WebhookSecretInvalid() from None
    if not SECRET_BYTES[0] <= len(raw) <= SECRET_BYTES[1]:
        raise WebhookSecretInvalid(f"This secret holds {len(raw)} bytes; a webhook secret holds 24 to 64.")
    return secret


def events_check(events: Iterable[str]) -> list[str]:
    known = set(WebhookEventType.values)
    wanted = list(dict.fromkeys(event.strip() for event in events if event.strip()))
    unknown = [event for event in wanted if event not in known]
    if unknown or not wanted:
        raise WebhookEventsInvalid(
            f"Unknown event(s) {', '.join(unknown)}. " + WebhookEventsInvalid.default_detail
            if unknown
            else WebhookEventsInvalid.default_detail
        )
    return wanted


def private_addresses_allowed(endpoint: WebhookEndpoint) -> bool:
    """Whether this endpoint's URL may resolve to a non-public address, read at each use."""
    return bool(settings.WEBHOOKS_ALLOW_PRIVATE or (endpoint.allow_private and settings.WEBHOOKS_ALLOW_PRIVATE_OPT_IN))


def endpoint_add(
    *,
    url: str,
    events: Iterable[str],
    secret: str | None = None,
    allow_private: bool = False,
    payments: bool = False,
    description: str = "",
) -> WebhookEndpoint:
    """Register an endpoint. Its URL is resolved now and refused if it reaches a non-public
    address that the settings do not allow (``DestinationRefused``)."""
    if allow_private and not (settings.WEBHOOKS_ALLOW_PRIVATE_OPT_IN or settings.WEBHOOKS_ALLOW_PRIVATE):
        raise PrivateAddressesNotPermitted()
    endpoint = WebhookEndpoint(
        url=url,
        events=events_check(events),
        secret=secret_check(secret) if secret else secret_generate(),
        allow_private=allow_private,
        payments=payments,
        description=description,
    )
    destination_resolve(url, allow_private=private_addresses_allowed(endpoint))
    endpoint.save()
    logger.info("webhook endpoint %s added: %s for %s", endpoint.pk, url, ", ".join(endpoint.events))
    return endpoint


def endpoint_remove(*, endpoint: WebhookEndpoint) -> int:
    """Delete the endpoint and every delivery of its own. Returns the deliveries dropped.

    A drain may be recording deliveries for it at that moment. The row is locked ``FOR
    UPDATE`` first, which waits for every drain that listed it (``FOR KEY SHARE``, in
    ``events_record``) to commit and holds off the next one (which then does not see it), so
    the deliveries deleted with it are all of them and none is left pointing at it."""
    with transaction.atomic():
        locked = WebhookEndpoint.objects.select_for_update().filter(pk=endpoint.pk).first()
        if locked is None:
            return 0
        dropped = locked.deliveries.count()
        locked.delete()
    return dropped


def endpoint_rotate(
    *, endpoint: WebhookEndpoint, secret: str | None = None, overlap_seconds: float | None = None
) -> WebhookEndpoint:
    """A new secret that signs from now on; the current one keeps signing and verifying
    beside it for ``overlap_seconds`` (``WEBHOOKS_SECRET_OVERLAP_SECONDS``), so receivers
    and the shop's checkout can switch over at their own pace."""
    overlap = settings.WEBHOOKS_SECRET_OVERLAP_SECONDS if overlap_seconds is None else overlap_seconds
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_until = timezone.now() + timedelta(seconds=overlap)
    endpoint.secret = secret_check(secret) if secret else secret_generate()
    endpoint.save(update_fields=["secret", "previous_secret", "previous_secret_until"])
    return endpoint


def endpoint_secrets(endpoint: WebhookEndpoint, *, now: datetime) -> list[str]:
    """The secrets valid now: the current one, and the previous one during an overlap."""
    valid = [endpoint.secret]
    if endpoint.previous_secret and endpoint.previous_secret_until and endpoint.previous_secret_until > now:
        valid.append(endpoint.previous_secret)
    return valid


def endpoint_pause(*, endpoint: WebhookEndpoint, reason: str) -> WebhookEndpoint:
    """Stop delivering to the endpoint; its deliveries wait, pending, until it is resumed."""
    WebhookEndpoint.objects.filter(pk=endpoint.pk, paused_at__isnull=True).update(
        paused_at=timezone.now(), pause_reason=reason[:300]
    )
    endpoint.refresh_from_db()
    return endpoint


def endpoint_resume(*, endpoint: WebhookEndpoint) -> int:
    """Deliver to the endpoint again, starting with what waited. Returns the chains sent."""
    now = timezone.now()
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        paused_at=None, pause_reason="", consecutive_failures=0, failing_since=None
    )
    WebhookDelivery.objects.filter(endpoint=endpoint, status=DeliveryStatus.PENDING).update(next_attempt_at=now)
    endpoint.refresh_from_db()
    chains = list(
        WebhookDelivery.objects.filter(endpoint=endpoint, status=DeliveryStatus.PENDING)
        .values_list("order_id", flat=True)
        .distinct()
    )
    transaction.on_commit(lambda: deliveries_send({endpoint.pk: [str(order_id) for order_id in chains]}))
    return len(chains)


# --- Events ---------------------------------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def order_document(order: Order) -> dict[str, Any]:
    """The order as an event carries it, with its sale and buyer (``order.sale.product`` and
    ``order.user`` loaded)."""
    sale = order.sale
    return {
        "id": str(order.id),
        "sale_id": order.sale_id,
        "status": order.status,
        "unit_price": str(order.unit_price),
        "created_at": _iso(order.created_at),
        "paid_at": _iso(order.paid_at),
        "sale": {
            "id": sale.pk,
            "product": {"id": sale.product_id, "slug": sale.product.slug, "name": sale.product.name},
            "price": str(sale.price),
            "starts_at": _iso(sale.starts_at),
            "ends_at": _iso(sale.ends_at),
        },
        "buyer": {"id": order.user_id, "username": order.user.get_username(), "email": order.user.email},
    }


def event_body(*, event_type: str, occurred_at: datetime, order: Order) -> str:
    """The exact text that is signed and sent: compact JSON, the same on every attempt."""
    document = {"type": event_type, "timestamp": _iso(occurred_at), "data": {"order": order_document(order)}}
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def events_record(*, order_ids: Sequence[str], event_type: WebhookEventType) -> int:
    """Record ``event_type`` for each order and a delivery for each endpoint that wants it.
    Call inside the transaction that changed the orders: the events commit with the change
    and their deliveries are sent after it. An order that already has this event (a drain
    replayed after a crash) gets nothing new. Without an endpoint wanting the event, nothing
    is written. Returns the events recorded."""
    # FOR KEY SHARE is the lock each delivery's foreign key takes at commit, taken here instead:
    # an endpoint being removed (``endpoint_remove``, FOR UPDATE) is waited for and then not
    # seen, and one listed here cannot be deleted until this transaction's deliveries are in.
    endpoints = list(
        WebhookEndpoint.objects.raw(
            f"SELECT id FROM {WebhookEndpoint._meta.db_table} WHERE events @> %s::varchar[] FOR KEY SHARE",
            [[event_type.value]],
        )
    )
    if not endpoints or not order_ids:
        return 0
    now = timezone.now()
    # A rehearsal's shadow orders are nobody's purchases: the shop's systems never hear of them.
    orders = list(
        Order.objects.filter(id__in=order_ids, sale__rehearsal_of__isnull=True)
        .select_related("sale__product", "user")
        .order_by("created_at", "id")
    )
    highest = _highest_sequences([order.pk for order in orders])
    already = set(
        WebhookEvent.objects.filter(order__in=orders, type=event_type.value).values_list("order_id", flat=True)
    )
    events = [
        WebhookEvent(
            type=event_type.value,
            order=order,
            sequence=highest.get(order.pk, 0) + 1,
            body=event_body(event_type=event_type.value, occurred_at=now, order=order),
            occurred_at=now,
        )
        for order in orders
        if order.pk not in already
    ]
    if not events:
        return 0
    WebhookEvent.objects.bulk_create(events, ignore_conflicts=True)
    # A concurrent drain may have recorded some of them first: deliveries go with the events
    # that are this transaction's own.
    mine = {event.pk for event in events}
    recorded = set(WebhookEvent.objects.filter(pk__in=mine).values_list("pk", flat=True))
    own = [event for event in events if event.pk in recorded]
    WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                endpoint=endpoint,
                event=event,
                order_id=event.order_id,
                sequence=event.sequence,
                next_attempt_at=now,
            )
            for event in own
            for endpoint in endpoints
        ],
        ignore_conflicts=True,
    )
    chains = {endpoint.pk: [str(event.order_id) for event in own] for endpoint in endpoints}
    transaction.on_commit(lambda: deliveries_send(chains))
    return len(own)


def _highest_sequences(order_ids: Sequence[Any]) -> dict[Any, int]:
    return dict(
        WebhookEvent.objects.filter(order_id__in=order_ids)
        .values("order_id")
        .annotate(highest=Max("sequence"))
        .values_list("order_id", "highest")
    )


def deliveries_send(chains: Mapping[int, Sequence[str]], *, countdown: float | None = None) -> None:
    """Send one delivery task per endpoint for the chains named (endpoint id -> order ids)."""
    for endpoint_id, order_ids in chains.items():
        if order_ids:
            current_app.send_task(
                DELIVER_TASK,
                args=(endpoint_id, list(order_ids)),
                queue=settings.WEBHOOKS_QUEUE,
                countdown=countdown,
            )


# --- Delivering -----------------------------------------------------------------------------


@dataclass
class ChainResult:
    delivered: int = 0
    dead: int = 0
    failed: int = 0
    busy: bool = False
    """Another worker holds the chain."""


class _ChainBusy(Exception):
    pass


def signature_header(*, endpoint: WebhookEndpoint, msg_id: str, timestamp: datetime, body: str) -> str:
    """``v1,<base64>`` per valid secret, space-separated (both during a rotation's overlap)."""
    return " ".join(
        Webhook(secret).sign(msg_id=msg_id, timestamp=timestamp, data=body)
        for secret in endpoint_secrets(endpoint, now=timestamp)
    )


def _head_locked(endpoint_id: int, order_id: str) -> WebhookDelivery | None:
    """The chain's first pending delivery, row-locked for this transaction; ``_ChainBusy``
    if another transaction holds it (NOWAIT: a second task leaves the chain to the first)."""
    try:
        with transaction.atomic():
            return (
                WebhookDelivery.objects.select_for_update(nowait=True, of=("self",))
                .select_related("event", "endpoint")
                .filter(endpoint_id=endpoint_id, order_id=order_id, status=DeliveryStatus.PENDING)
                .order_by("sequence")
                .first()
            )
    except OperationalError as error:
        if getattr(getattr(error, "__cause__", None), "sqlstate", None) == "55P03":  # lock_not_available
            raise _ChainBusy() from None
        raise


@dataclass(frozen=True, slots=True)
class _Attempt:
    status_code: int | None
    retry_after: str | None
    error: str


def _attempt(delivery: WebhookDelivery, *, now: datetime) -> _Attempt:
    endpoint, event = delivery.endpoint, delivery.event
    try:
        destination: Destination = destination_resolve(endpoint.url, allow_private=private_addresses_allowed(endpoint))
    except DestinationRefused as refused:
        return _Attempt(None, None, f"refused before sending: {refused.detail}")
    timestamp = now.replace(microsecond=0)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": event.pk,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature_header(endpoint=endpoint, msg_id=event.pk, timestamp=timestamp, body=event.body),
    }
    try:
        answer = destination_post(
            destination, body=event.body.encode("utf-8"), headers=headers, timeout=settings.WEBHOOKS_TIMEOUT_SECONDS
        )
    except (OSError, http.client.HTTPException) as failure:
        return _Attempt(None, None, f"{type(failure).__name__}: {failure}"[:500])
    said = "" if 200 <= answer.status_code < 300 else f"answered {answer.status_code}: {answer.excerpt}"[:500]
    return _Attempt(answer.status_code, answer.retry_after, said)


def _endpoint_succeeded(endpoint_id: int, now: datetime) -> None:
    WebhookEndpoint.objects.filter(pk=endpoint_id).update(
        consecutive_failures=0, failing_since=None, last_success_at=now
    )


def _endpoint_failed(endpoint_id: int, now: datetime) -> None:
    WebhookEndpoint.objects.filter(pk=endpoint_id).update(
        consecutive_failures=F("consecutive_failures") + 1, failing_since=Coalesce(F("failing_since"), now)
    )
    endpoint = WebhookEndpoint.objects.only("consecutive_failures", "failing_since", "paused_at").get(pk=endpoint_id)
    run = delivery_rules.FailureRun(failures=endpoint.consecutive_failures, since=endpoint.failing_since)
    if endpoint.paused_at is None and delivery_rules.should_pause(
        run,
        now=now,
        after_failures=settings.WEBHOOKS_PAUSE_AFTER_FAILURES,
        after_seconds=settings.WEBHOOKS_PAUSE_AFTER_SECONDS,
    ):
        reason = f"{run.failures} failed attempts in a row since {_iso(run.since)}"
        WebhookEndpoint.objects.filter(pk=endpoint_id, paused_at__isnull=True).update(
            paused_at=now, pause_reason=reason
        )
        logger.warning("webhook endpoint %s paused: %s", endpoint_id, reason)


def order_deliveries_run(*, endpoint_id: int, order_id: str) -> ChainResult:
    """Deliver the chain (one endpoint, one order) in sequence until it is empty, a delivery
    fails (its retry is scheduled and the later ones wait behind it), the next delivery is
    not due yet, or the endpoint is paused. Idempotent and safe to run concurrently: the
    first pending delivery is held under a row lock while its request is out, and the
    outcome is written in the same transaction (a worker killed mid-request leaves it
    pending, to be sent again with the same ``webhook-id``)."""
    result = ChainResult()
    retry_in: float | None = None
    while True:
        try:
            with transaction.atomic():
                delivery = _head_locked(endpoint_id, order_id)
                if delivery is None or delivery.endpoint.paused_at is not None:
                    break
                now = timezone.now()
                if delivery.next_attempt_at > now:
                    break
                attempt = _attempt(delivery, now=now)
                outcome = delivery_rules.attempt_outcome(attempt.status_code)
                delivery.attempts += 1
                delivery.last_attempt_at = now
                delivery.last_status_code = attempt.status_code
                delivery.last_error = attempt.error
                if outcome is delivery_rules.AttemptOutcome.DELIVERED:
                    delivery.status = DeliveryStatus.DELIVERED
                    delivery.delivered_at = now
                    _endpoint_succeeded(endpoint_id, now)
                    result.delivered += 1
                elif outcome is delivery_rules.AttemptOutcome.GONE:
                    # The receiver asked for no more: the endpoint is paused, this delivery waits.
                    WebhookEndpoint.objects.filter(pk=endpoint_id, paused_at__isnull=True).update(
                        paused_at=now, pause_reason="the receiver answered 410 Gone"
                    )
                    result.failed += 1
                else:
                    delay = delivery_rules.retry_delay(
                        failed_attempts=delivery.attempts,
                        schedule=settings.WEBHOOKS_RETRY_DELAYS_SECONDS,
                        jitter=settings.WEBHOOKS_RETRY_JITTER,
                        draw=random.random(),
                        retry_after=delivery_rules.retry_after_seconds(attempt.retry_after, now=now),
                    )
                    if delay is None:
                        delivery.status = DeliveryStatus.DEAD
                        delivery.dead_at = now
                        result.dead += 1
                        logger.warning(
                            "webhook %s to endpoint %s is a dead letter after %s attempts: %s",
                            delivery.event_id,
                            endpoint_id,
                            delivery.attempts,
                            attempt.error,
                        )
                    else:
                        delivery.next_attempt_at = now + timedelta(seconds=delay)
                        retry_in = delay
                        result.failed += 1
                    _endpoint_failed(endpoint_id, now)
                delivery.save()
        except _ChainBusy:
            result.busy = True
            break
        if outcome is not delivery_rules.AttemptOutcome.DELIVERED and delivery.status != DeliveryStatus.DEAD:
            break
    if retry_in is not None and retry_in <= COUNTDOWN_LONGEST_SECONDS:
        deliveries_send({endpoint_id: [order_id]}, countdown=retry_in)
    elif result.busy:
        # The holder may finish just before a new event of this chain commits; look again.
        deliveries_send({endpoint_id: [order_id]}, countdown=settings.WEBHOOKS_TIMEOUT_SECONDS + 1)
    return result


def deliveries_run(*, endpoint_id: int, order_ids: Sequence[str]) -> ChainResult:
    """Each named chain of the endpoint, one after the other."""
    total = ChainResult()
    for order_id in dict.fromkeys(order_ids):
        one = order_deliveries_run(endpoint_id=endpoint_id, order_id=order_id)
        total.delivered += one.delivered
        total.dead += one.dead
        total.failed += one.failed
        total.busy = total.busy or one.busy
    return total


def deliveries_overdue_send(*, now: datetime | None = None, limit: int = 10_000) -> int:
    """Beat's sweep: send every chain whose first pending delivery is due and overdue by
    ``SWEEP_GRACE`` (a retry longer than a delayed task is kept for, or a task that was
    lost), on endpoints that are not paused. Returns the chains sent."""
    now = now or timezone.now()
    earlier = WebhookDelivery.objects.filter(
        endpoint=OuterRef("endpoint"),
        order=OuterRef("order"),
        status=DeliveryStatus.PENDING,
        sequence__lt=OuterRef("sequence"),
    )
    heads = (
        WebhookDelivery.objects.filter(
            status=DeliveryStatus.PENDING,
            next_attempt_at__lte=now - SWEEP_GRACE,
            endpoint__paused_at__isnull=True,
        )
        .filter(~Exists(earlier))
        .values_list("endpoint_id", "order_id")[:limit]
    )
    chains: dict[int, list[str]] = {}
    for endpoint_id, order_id in heads:
        chains.setdefault(endpoint_id, []).append(str(order_id))
    deliveries_send(chains)
    return sum(len(order_ids) for order_ids in chains.values())


def deliveries_replay(*, delivery_ids: Iterable[int]) -> int:
    """Send dead letters again from the start of the retry schedule, with their original
    ``webhook-id`` and body. Returns how many were replayed."""
    now = timezone.now()
    ids = list(delivery_ids)
    with transaction.atomic():
        replayed = list(
            WebhookDelivery.objects.select_for_update()
            .filter(pk__in=ids, status=DeliveryStatus.DEAD)
            .values_list("pk", "endpoint_id", "order_id")
        )
        WebhookDelivery.objects.filter(pk__in=[pk for pk, _, _ in replayed]).update(
            status=DeliveryStatus.PENDING,
            attempts=0,
            replays=F("replays") + 1,
            next_attempt_at=now,
            dead_at=None,
        )
        chains: dict[int, list[str]] = {}
        for _, endpoint_id, order_id in replayed:
            chains.setdefault(endpoint_id, []).append(str(order_id))
        transaction.on_commit(lambda: deliveries_send(chains))
    return len(replayed)


def endpoints_backlog() -> dict[int, dict[str, int]]:
    """Per endpoint: its pending and dead deliveries (the operator's list and the admin)."""
    backlog: dict[int, dict[str, int]] = {}
    rows = (
        WebhookDelivery.objects.filter(status__in=[DeliveryStatus.PENDING, DeliveryStatus.DEAD])
        .values("endpoint_id", "status")
        .annotate(count=Count("id"))
        .values_list("endpoint_id", "status", "count")
    )
    for endpoint_id, status, count in rows:
        backlog.setdefault(endpoint_id, {"pending": 0, "dead": 0})[status.lower()] = count
    return backlog
