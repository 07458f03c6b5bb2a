"""The payment step against a real web server: the pay link to the shop's checkout, and the
shop's signed callback POST /api/orders/<id>/payment/ (paid, failed, after expiry, forged,
replayed outside the tolerance, another order's reference): each refusal is the contract's
JSON 4xx and changes nothing."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings
from standardwebhooks import Webhook

from orders.drain import sale_orders_drain
from orders.models import Order, OrderStatus, WebhookEndpoint, new_webhook_id
from orders.payments import payment_reference
from orders.services import order_confirmations_send, order_release
from orders.webhooks import endpoint_add, endpoint_rotate, secret_generate
from sales import inventory
from tests.factories import make_sale, make_user, make_wins
from tests.processes import OPEN_ADMISSION, ChildProcess, start_web

from .conftest import new_secret

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "pw-for-tests-1"


def won_orders(count: int) -> list[Order]:
    sale = make_sale(stock=count + 2)
    users = [make_user() for _ in range(count)]
    make_wins(sale.pk, [user.pk for user in users])
    sale_orders_drain(sale_id=sale.pk)
    return list(Order.objects.filter(sale=sale).select_related("user").order_by("created_at"))


def shop_endpoint(secret: str) -> WebhookEndpoint:
    # Registered after the orders were won and wanting only order.created: the callbacks
    # below record no event, so no delivery task is sent anywhere.
    return endpoint_add(
        url="http://127.0.0.1:9/shop/", events=["order.created"], secret=secret, allow_private=True, payments=True
    )


def callback(
    web: ChildProcess,
    order_id: str,
    body: dict[str, Any] | str,
    *,
    secret: str,
    at: datetime | None = None,
    msg_id: str | None = None,
) -> httpx.Response:
    text = body if isinstance(body, str) else json.dumps(body)
    msg_id = msg_id or new_webhook_id()
    at = (at or datetime.now(tz=UTC)).replace(microsecond=0)
    headers = {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id=msg_id, timestamp=at, data=text),
    }
    return httpx.post(f"{web.url}/api/orders/{order_id}/payment/", content=text, headers=headers, timeout=30)


def state(order: Order) -> tuple[str, object]:
    order.refresh_from_db()
    return order.status, order.paid_at


def test_a_paid_callback_moves_the_order_to_paid_and_a_repeat_changes_nothing_more(web_server: ChildProcess) -> None:
    secret = new_secret()
    (order,) = won_orders(1)
    shop_endpoint(secret)
    body = {"outcome": "paid", "reference": payment_reference(order)}

    first = callback(web_server, str(order.pk), body, secret=secret)

    assert first.status_code == 200
    assert first.json()["status"] == "PAID"
    assert first.json()["id"] == str(order.pk)
    status, paid_at = state(order)
    assert status == OrderStatus.PAID and paid_at is not None
    again = callback(web_server, str(order.pk), body, secret=secret)
    assert again.status_code == 200
    assert state(order) == (OrderStatus.PAID, paid_at)


def test_a_failed_callback_keeps_the_order_pending(web_server: ChildProcess) -> None:
    secret = new_secret()
    (order,) = won_orders(1)
    shop_endpoint(secret)

    answer = callback(
        web_server, str(order.pk), {"outcome": "failed", "reference": payment_reference(order)}, secret=secret
    )

    assert answer.status_code == 200
    assert answer.json()["status"] == "PENDING"
    assert state(order) == (OrderStatus.PENDING, None)


def test_a_callback_after_expiry_is_refused_with_order_expired(web_server: ChildProcess) -> None:
    secret = new_secret()
    (order,) = won_orders(1)
    shop_endpoint(secret)
    order_release(order=order, status=OrderStatus.EXPIRED)

    answer = callback(
        web_server, str(order.pk), {"outcome": "paid", "reference": payment_reference(order)}, secret=secret
    )

    assert answer.status_code == 409
    assert answer.json()["status"] == "ORDER_EXPIRED"
    assert set(answer.json()) == {"status", "detail"}
    assert state(order) == (OrderStatus.EXPIRED, None)


@pytest.fixture
def web_with_a_payment_window() -> Any:
    child = start_web(workers=1, env={**OPEN_ADMISSION, "FLASHSALE_PAYMENT_WINDOW_SECONDS": "600"})
    yield child
    child.stop()


def test_a_callback_past_the_window_expires_the_order_itself_before_beat_and_is_refused(
    web_with_a_payment_window: ChildProcess,
) -> None:
    # Given an order won eleven minutes ago under a ten-minute window, not yet expired by beat
    secret = new_secret()
    (order,) = won_orders(1)
    Order.objects.filter(pk=order.pk).update(created_at=timezone.now() - timedelta(minutes=11))
    shop_endpoint(secret)
    remaining = inventory.sale_counts(order.sale_id).remaining

    # When the shop reports it paid
    answer = callback(
        web_with_a_payment_window,
        str(order.pk),
        {"outcome": "paid", "reference": payment_reference(order)},
        secret=secret,
    )

    # Then it is refused, the order expired and its unit is back on sale
    assert answer.status_code == 409
    assert answer.json()["status"] == "ORDER_EXPIRED"
    assert state(order) == (OrderStatus.EXPIRED, None)
    assert inventory.sale_counts(order.sale_id).remaining == remaining + 1


def test_a_forged_or_tampered_callback_is_refused_and_changes_nothing(web_server: ChildProcess) -> None:
    secret = new_secret()
    (order,) = won_orders(1)
    shop_endpoint(secret)
    body = {"outcome": "paid", "reference": payment_reference(order)}

    forged = callback(web_server, str(order.pk), body, secret=new_secret())
    text = json.dumps(body)
    signed_for_other_body = callback(web_server, str(order.pk), text, secret=secret)
    tampered = httpx.post(
        f"{web_server.url}/api/orders/{order.pk}/payment/",
        content=text.replace("paid", "paid "),
        headers={
            key: signed_for_other_body.request.headers[key]
            for key in ("webhook-id", "webhook-timestamp", "webhook-signature")
        },
        timeout=30,
    )
    unsigned = httpx.post(f"{web_server.url}/api/orders/{order.pk}/payment/", json=body, timeout=30)
    garbled = httpx.post(
        f"{web_server.url}/api/orders/{order.pk}/payment/",
        json=body,
        headers={
            "webhook-id": "msg_1",
            "webhook-timestamp": str(int(datetime.now(tz=UTC).timestamp())),
            "webhook-signature": "nonsense",
        },
        timeout=30,
    )

    assert signed_for_other_body.status_code == 200  # the genuine one, sent first, for contrast
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.PENDING, paid_at=None)
    for refused in (forged, tampered, unsigned, garbled):
        assert refused.status_code == 401, refused.text
        assert refused.json()["status"] == "SIGNATURE_INVALID"
        assert set(refused.json()) == {"status", "detail"}
    assert state(order) == (OrderStatus.PENDING, None)
    again = callback(web_server, str(order.pk), body, secret=new_secret())
    assert again.status_code == 401
    assert state(order) == (OrderStatus.PENDING, None)


def test_a_callback_replayed_outside_the_tolerance_is_refused_and_changes_nothing(web_server: ChildProcess) -> None:
    secret = new_secret()
    (order,) = won_orders(1)
    shop_endpoint(secret)
    body = {"outcome": "paid", "reference": payment_reference(order)}

    stale = callback(web_server, str(order.pk), body, secret=secret, at=datetime.now(tz=UTC) - timedelta(minutes=6))
    early = callback(web_server, str(order.pk), body, secret=secret, at=datetime.now(tz=UTC) + timedelta(minutes=6))

    for refused in (stale, early):
        assert refused.status_code == 401
        assert refused.json()["status"] == "SIGNATURE_EXPIRED"
    assert state(order) == (OrderStatus.PENDING, None)


def test_a_callback_with_another_orders_reference_is_refused_and_changes_neither(web_server: ChildProcess) -> None:
    secret = new_secret()
    mine, theirs = won_orders(2)
    shop_endpoint(secret)

    foreign = callback(
        web_server, str(mine.pk), {"outcome": "paid", "reference": payment_reference(theirs)}, secret=secret
    )
    made_up = callback(web_server, str(mine.pk), {"outcome": "paid", "reference": f"{mine.pk}:forged"}, secret=secret)
    unknown_id = str(uuid.uuid4())
    nobody = Order(id=uuid.UUID(unknown_id))
    unknown = callback(
        web_server, unknown_id, {"outcome": "paid", "reference": payment_reference(nobody)}, secret=secret
    )

    for refused in (foreign, made_up):
        assert refused.status_code == 403
        assert refused.json()["status"] == "PAYMENT_REFERENCE_INVALID"
    assert unknown.status_code == 404
    assert unknown.json()["status"] == "NOT_FOUND"
    assert state(mine) == (OrderStatus.PENDING, None)
    assert state(theirs) == (OrderStatus.PENDING, None)


def test_a_malformed_callback_body_is_a_400_and_changes_nothing(web_server: ChildProcess) -> None:
    secret = new_secret()
    (order,) = won_orders(1)
    shop_endpoint(secret)
    reference = payment_reference(order)

    bodies: list[Any] = [
        "not json",
        {"outcome": "refunded", "reference": reference},
        {"outcome": "paid", "reference": reference, "amount": "1.00"},
        {"outcome": "paid"},
        [],
    ]
    for body in bodies:
        text = body if isinstance(body, str) else json.dumps(body)
        answer = callback(web_server, str(order.pk), text, secret=secret)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.json()["status"] == "INVALID_REQUEST"
    assert state(order) == (OrderStatus.PENDING, None)


def test_during_a_rotation_the_old_secret_still_signs_callbacks_until_the_overlap_ends(
    web_server: ChildProcess,
) -> None:
    old = new_secret()
    (order,) = won_orders(1)
    endpoint = shop_endpoint(old)
    endpoint_rotate(endpoint=endpoint, overlap_seconds=3600)
    body = {"outcome": "failed", "reference": payment_reference(order)}

    assert callback(web_server, str(order.pk), body, secret=old).status_code == 200
    assert callback(web_server, str(order.pk), body, secret=endpoint.secret).status_code == 200
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(previous_secret_until=timezone.now() - timedelta(seconds=1))
    assert callback(web_server, str(order.pk), body, secret=old).status_code == 401


def test_only_a_payments_endpoints_secret_signs_a_callback(web_server: ChildProcess) -> None:
    crm = new_secret()
    (order,) = won_orders(1)
    endpoint_add(url="http://127.0.0.1:9/crm/", events=["order.created"], secret=crm, allow_private=True)

    answer = callback(web_server, str(order.pk), {"outcome": "paid", "reference": payment_reference(order)}, secret=crm)

    assert answer.status_code == 401
    assert state(order) == (OrderStatus.PENDING, None)


def test_the_pay_link_sends_the_winner_to_the_checkout_with_the_order_and_a_signed_reference(
    settings: Settings,
) -> None:
    settings.FLASHSALE_PAYMENT_CHECKOUT_URL = "https://shop.example/checkout"
    (order,) = won_orders(1)
    client = Client()
    client.force_login(order.user)

    page = client.get(f"/orders/{order.pk}/").content.decode()
    redirect = client.get(f"/orders/{order.pk}/pay/")
    stranger = Client()
    stranger.force_login(make_user())

    assert f'href="/orders/{order.pk}/pay/"' in page
    assert redirect.status_code == 302
    target = urlsplit(redirect["Location"])
    query = parse_qs(target.query)
    assert f"{target.scheme}://{target.netloc}{target.path}" == "https://shop.example/checkout"
    assert query["order_id"] == [str(order.pk)]
    assert query["reference"] == [payment_reference(order)]
    assert query["return_url"] == [f"http://testserver/orders/{order.pk}/"]
    assert query["amount"] == ["1.00"]
    assert stranger.get(f"/orders/{order.pk}/pay/").status_code == 404
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.PAID, paid_at=timezone.now())
    assert client.get(f"/orders/{order.pk}/pay/")["Location"] == f"/orders/{order.pk}/"
    assert "data-pay-link" not in client.get(f"/orders/{order.pk}/").content.decode()


def test_the_confirmation_email_carries_the_pay_link_and_the_deadline(settings: Settings) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.FLASHSALE_SITE_URL = "https://flash.example"
    settings.FLASHSALE_PAYMENT_CHECKOUT_URL = "https://shop.example/checkout"
    settings.FLASHSALE_PAYMENT_WINDOW_SECONDS = 900
    (order,) = won_orders(1)

    assert order_confirmations_send(order_ids=[str(order.pk)]) == 1

    (message,) = mail.outbox
    assert f"Pay for it here: https://flash.example/orders/{order.pk}/pay/" in message.body
    assert f"Your order: https://flash.example/orders/{order.pk}/" in message.body
    deadline = (order.created_at + timedelta(seconds=900)).astimezone(UTC)
    assert f"Pay by {deadline:%Y-%m-%d %H:%M:%S} UTC" in message.body
    assert f'href="https://flash.example/orders/{order.pk}/pay/"' in message.alternatives[0][0]  # type: ignore[attr-defined]


def test_without_a_checkout_the_email_and_the_page_offer_no_pay_link(settings: Settings) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.FLASHSALE_SITE_URL = "https://flash.example"
    settings.FLASHSALE_PAYMENT_CHECKOUT_URL = ""
    (order,) = won_orders(1)
    order_confirmations_send(order_ids=[str(order.pk)])
    client = Client()
    client.force_login(order.user)

    assert "Pay for it here" not in mail.outbox[0].body
    assert "data-pay-link" not in client.get(f"/orders/{order.pk}/").content.decode()
    assert secret_generate().startswith("whsec_")
