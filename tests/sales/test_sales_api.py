"""The sales API's reads: the list, a sale's detail, its status."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from sales.models import Admission
from sales.purchase import purchase_attempt
from tests.factories import make_sale, make_user

pytestmark = pytest.mark.django_db


def test_sales_list_and_detail_follow_the_contract(client: Client) -> None:
    sale = make_sale(stock=4, starts_in=-5)
    purchase_attempt(sale_id=sale.pk, user_id=make_user().pk)
    upcoming = make_sale(stock=2, starts_in=600)

    listed = client.get("/api/sales/").json()
    detail = client.get(f"/api/sales/{sale.pk}/").json()

    assert [entry["id"] for entry in listed] == [sale.pk, upcoming.pk]
    assert set(listed[0]) == {
        "id", "product", "price", "total_stock", "remaining_stock", "starts_at", "ends_at", "status", "admission",
        "shuffle_commitment", "shuffle_seed",
    }  # fmt: skip
    assert listed[0]["product"] == {
        "id": sale.product.pk,
        "slug": sale.product.slug,
        "name": sale.product.name,
        "description": sale.product.description,
    }
    assert (listed[0]["remaining_stock"], listed[0]["status"], listed[0]["price"]) == (3, "live", "1.00")
    assert (listed[1]["remaining_stock"], listed[1]["status"]) == (2, "scheduled")
    assert detail["status"] == "live"
    server_time = parse_datetime(detail["server_time"])
    assert server_time is not None and server_time.utcoffset() == timedelta(0)
    assert abs((server_time - timezone.now()).total_seconds()) < 60
    assert listed[0]["starts_at"].endswith("Z") or listed[0]["starts_at"].endswith("+00:00")


def test_sale_status_reads_sold_out_and_ended(client: Client) -> None:
    sold = make_sale(stock=1)
    purchase_attempt(sale_id=sold.pk, user_id=make_user().pk)
    over = make_sale(starts_in=-120, duration=60)

    assert client.get(f"/api/sales/{sold.pk}/").json()["status"] == "sold_out"
    assert client.get(f"/api/sales/{over.pk}/").json()["status"] == "ended"


def test_a_sale_says_how_it_admits_shoppers(client: Client) -> None:
    direct = make_sale()
    queued = make_sale(admission=Admission.QUEUE, serving_rate=5)

    assert client.get(f"/api/sales/{direct.pk}/").json()["admission"] == "direct"
    assert client.get(f"/api/sales/{queued.pk}/").json()["admission"] == "queue"


def test_an_unknown_sale_detail_answers_404(client: Client) -> None:
    response = client.get("/api/sales/424242/")
    assert response.status_code == 404
    assert response.json()["status"] == "NOT_FOUND"
