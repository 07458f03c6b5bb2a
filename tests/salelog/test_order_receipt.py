"""The order page hands the winner the receipt their purchase answered, rebuilt from the log,
and the verifier to check it with (docs/design.md, "The transparency log")."""

from __future__ import annotations

import pytest
from django.test import Client

from orders.drain import sale_orders_drain
from salelog.builder import sale_log_build
from sales.purchase import purchase_attempt
from tests.factories import make_sale, make_user

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_winner_downloads_the_receipt_their_purchase_answered(client: Client) -> None:
    # Given a win whose log entry the builder has stored
    sale = make_sale(stock=3)
    winner, other = make_user(), make_user()
    won = purchase_attempt(sale_id=sale.pk, user_id=winner.pk)
    assert won.receipt is not None
    client.force_login(winner)
    order_id = won.order_id
    sale_orders_drain(sale_id=sale.pk)  # the order row, as the worker writes it
    before = client.get(f"/orders/{order_id}/receipt/")
    sale_log_build(sale_id=sale.pk)

    # When they download it from their order
    answer = client.get(f"/orders/{order_id}/receipt/")

    # Then it is byte for byte the receipt the purchase answered (Ed25519 signs deterministically)
    assert before.status_code == 404  # nothing in PostgreSQL's log before the builder's pass
    assert answer.status_code == 200
    assert answer.json() == won.receipt
    assert "attachment" in answer["Content-Disposition"]
    # And nobody else gets it, and the verifier is one file anyone can download
    client.force_login(other)
    assert client.get(f"/orders/{order_id}/receipt/").status_code == 404
    verifier = client.get("/log/verify.py")
    assert verifier.status_code == 200
    assert b"def main(" in verifier.content
    assert b"import django" not in verifier.content and b"from sales" not in verifier.content
