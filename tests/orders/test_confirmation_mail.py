"""A confirmation sent again (a worker killed between the mail and the mark) is the same
message: one Message-ID per order, whichever worker sends it."""

from __future__ import annotations

import uuid
from email import message_from_string

import pytest
from django.core import mail
from django.utils import timezone

from orders.models import Order
from orders.services import confirmation_message_id, order_confirmations_send
from tests.factories import make_sale, make_user

pytestmark = pytest.mark.django_db


def test_a_resent_confirmation_has_the_orders_one_message_id() -> None:
    # Given an order whose confirmation went out, and a crash before it was marked sent
    sale = make_sale(stock=5)
    user = make_user(email="buyer@example.com")
    order = Order.objects.create(
        id=uuid.uuid4(), sale=sale, user=user, unit_price=sale.price, created_at=timezone.now()
    )
    assert order_confirmations_send(order_ids=[str(order.id)]) == 1
    Order.objects.filter(pk=order.pk).update(confirmation_sent_at=None)

    # When it is sent again
    assert order_confirmations_send(order_ids=[str(order.id)]) == 1

    # Then both mails carry the same Message-ID, the order's (as the file backend writes them)
    assert len(mail.outbox) == 2
    ids = {message_from_string(sent.message().as_string())["Message-ID"].strip() for sent in mail.outbox}
    assert ids == {confirmation_message_id(order.id)}
    assert str(order.id) in confirmation_message_id(order.id)
