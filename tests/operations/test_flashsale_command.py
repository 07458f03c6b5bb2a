"""``manage.py flashsale``: the operator's tool, for people and (``--json``) for scripts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from accounts.revocation import REVOKED_KEY
from accounts.tokens import access_token_verify
from core.redis_store import inventory_redis
from orders.drain import sale_orders_drain
from salelog.models import Checkpoint, LogEntry, SaleLog
from sales import inventory
from sales.models import FlashSale, Product
from sales.purchase import purchase_attempt
from sales.tally import tally
from tests.factories import auth, make_sale, make_shoppers, make_user

pytestmark = pytest.mark.django_db


def flashsale(*args: str) -> str:
    out = StringIO()
    call_command("flashsale", *args, stdout=out)
    return out.getvalue()


def test_init_creates_the_product_and_a_loaded_sale() -> None:
    result = json.loads(flashsale("init", "gadget-x", "25", "--price", "2.50", "--starts-in", "0", "--json"))

    sale = FlashSale.objects.get(pk=result["sale_id"])
    assert sale.product == Product.objects.get(slug="gadget-x")
    assert (sale.total_stock, str(sale.price), sale.pow_difficulty) == (25, "2.50", 0)
    counts = inventory.sale_counts(sale.pk)
    assert (counts.loaded, counts.remaining) == (True, 25)


def test_init_explains_bad_input_and_creates_nothing() -> None:
    for args, message in (
        (["init", "gadget", "0"], "Stock must be at least 1."),
        (["init", "gadget", "5", "--price", "cheap"], "'cheap' is not a price."),
        (["init", "gadget", "5", "--price", "-1"], "A price cannot be negative."),
        (["init", "gadget", "5", "--duration", "0"], "Duration must be at least 1 second."),
    ):
        with pytest.raises(CommandError, match=message):
            flashsale(*args)
    assert FlashSale.objects.count() == 0


def test_init_takes_the_start_on_the_shops_clock_or_another_zones(settings: Settings) -> None:
    # Given a shop in Shanghai
    settings.SHOP_TIME_ZONE = "Asia/Shanghai"

    # When the operator schedules 11.11 at midnight there, and another sale by Paris's clock
    shop = json.loads(flashsale("init", "gadget-tz", "5", "--starts-at", "2026-11-11 00:00", "--json"))
    paris = json.loads(
        flashsale("init", "gadget-tz", "5", "--starts-at", "2026-11-11 00:00", "--tz", "Europe/Paris", "--json")
    )
    said = flashsale("init", "gadget-tz", "5", "--starts-at", "2026-11-11 00:00:30", "--duration", "60")

    # Then each starts at that wall time's instant, in UTC inside and ISO 8601 with an offset out
    assert FlashSale.objects.get(pk=shop["sale_id"]).starts_at == datetime(2026, 11, 10, 16, 0, tzinfo=UTC)
    assert (shop["starts_at"], shop["time_zone"]) == ("2026-11-10T16:00:00+00:00", "Asia/Shanghai")
    assert shop["starts_at_wall"] == "2026-11-11 00:00 Asia/Shanghai"
    assert FlashSale.objects.get(pk=paris["sale_id"]).starts_at == datetime(2026, 11, 10, 23, 0, tzinfo=UTC)
    assert (paris["starts_at"], paris["time_zone"]) == ("2026-11-10T23:00:00+00:00", "Europe/Paris")
    assert "  window   2026-11-11 00:00:30 Asia/Shanghai .. 2026-11-11 00:01:30 Asia/Shanghai" in said
    assert "2026-11-10T16:00:30+00:00 .. 2026-11-10T16:01:30+00:00 (UTC)" in said


def test_init_refuses_a_start_it_cannot_read_and_creates_nothing(settings: Settings) -> None:
    settings.SHOP_TIME_ZONE = "America/New_York"
    for args, message in (
        (["--starts-at", "11/11 midnight"], "write it as YYYY-MM-DD HH:MM"),
        (["--starts-at", "2026-11-11 00:00", "--tz", "Mars/Olympus"], "'Mars/Olympus' is not a time zone"),
        (["--tz", "Asia/Shanghai"], "--tz names the zone of --starts-at"),
        (["--starts-at", "2026-03-08 02:30"], "2026-03-08 02:30 in America/New_York does not exist there"),
        (["--starts-at", "2026-11-01 01:30"], "2026-11-01 01:30 in America/New_York happens twice there"),
        (["--starts-at", "2026-11-11 00:00", "--starts-in", "60"], "not allowed with argument"),
    ):
        with pytest.raises(CommandError, match=message):
            flashsale("init", "gadget", "5", *args)
    assert FlashSale.objects.count() == 0


@pytest.mark.usefixtures("sale_data")  # on one Redis and on a Redis Cluster
def test_status_shows_the_sale_and_the_verdict_on_both_invariants() -> None:
    sale = make_sale(stock=5)
    for user_id, _ in make_shoppers(2):
        purchase_attempt(sale_id=sale.pk, user_id=user_id)
    tally.flush()

    waiting = json.loads(flashsale("status", str(sale.pk), "--json"))
    sale_orders_drain(sale_id=sale.pk)
    drained = flashsale("status", sale.product.slug)

    assert waiting["remaining_stock"] == 3
    assert waiting["buyers"] == 2
    assert waiting["orders_in_postgresql"] == 0
    assert waiting["backlog"] == 2
    assert waiting["i1"] is True
    assert waiting["i2"] is None  # Not judged while orders wait in the stream.
    assert waiting["answers"] == {"arrived": 2, "script": 2, "answer:SUCCESS": 2}
    assert "remaining     3 of 5" in drained
    assert "orders (PG)   2" in drained
    assert "I1 stock      holds" in drained
    assert "I2 orders     holds" in drained


def test_status_does_not_drain_the_stream() -> None:
    sale = make_sale(stock=5)
    purchase_attempt(sale_id=sale.pk, user_id=make_shoppers(1)[0][0])
    flashsale("status", str(sale.pk))
    assert json.loads(flashsale("status", str(sale.pk), "--json"))["backlog"] == 1


@pytest.mark.usefixtures("sale_data")  # on one Redis and on a Redis Cluster
def test_buyers_lists_every_buyer_and_their_order() -> None:
    sale = make_sale(stock=5)
    won = {}
    for user_id, _ in make_shoppers(3):
        won[str(user_id)] = purchase_attempt(sale_id=sale.pk, user_id=user_id).order_id

    result = json.loads(flashsale("buyers", str(sale.pk), "--json"))

    assert result == {"sale_id": sale.pk, "buyers": won}
    assert f"Sale {sale.pk}: 3 buyer(s)" in flashsale("buyers", str(sale.pk))


@pytest.mark.usefixtures("sale_data")  # on one Redis and on a Redis Cluster
def test_reset_refuses_a_live_sale_without_force() -> None:
    sale = make_sale(stock=5)
    purchase_attempt(sale_id=sale.pk, user_id=make_shoppers(1)[0][0])

    with pytest.raises(CommandError, match="The sale is live"):
        flashsale("reset", str(sale.pk))
    assert inventory.sale_counts(sale.pk).buyers == 1

    result = json.loads(flashsale("reset", str(sale.pk), "--force", "--json"))
    assert result["redis_keys_deleted"] >= 4
    assert inventory.sale_counts(sale.pk).loaded is False


def test_reset_forgets_the_sales_log_so_it_starts_again_at_zero() -> None:
    # Given a sale whose attempts were logged and moved into PostgreSQL (entries and a checkpoint)
    sale = make_sale(stock=5, starts_in=600)
    log = SaleLog.objects.create(sale=sale, origin=f"test/{sale.pk}", size=1)
    LogEntry.objects.create(sale=sale, seq=0, entry=b"{}", leaf_hash=b"\x00" * 32)
    Checkpoint.objects.create(
        sale=sale, size=1, root_hash=b"\x00" * 32, note="n", key_id="dev", signed_at=timezone.now()
    )

    result = json.loads(flashsale("reset", str(sale.pk), "--json"))

    # Then its Redis stream and counter and its PostgreSQL log are gone together
    assert result["log_entries_deleted"] == 1
    assert not SaleLog.objects.filter(pk=log.pk).exists()
    assert not Checkpoint.objects.filter(sale=sale).exists()


def test_reset_of_an_upcoming_sale_needs_no_force() -> None:
    sale = make_sale(stock=5, starts_in=600)
    flashsale("reset", str(sale.pk))
    assert inventory.sale_counts(sale.pk).loaded is False
    sale.refresh_from_db()
    assert sale.warmed_at is None


def test_an_unknown_sale_is_a_clear_error() -> None:
    with pytest.raises(CommandError, match="No sale 'nope'"):
        flashsale("status", "nope")


def test_shoppers_creates_n_shoppers_and_prints_working_tokens(client: Client) -> None:
    before = get_user_model().objects.count()

    result = json.loads(flashsale("shoppers", "250", "--prefix", "rehearsal", "--password", "shared-pw-42", "--json"))

    shoppers = result["shoppers"]
    assert len(shoppers) == 250
    assert get_user_model().objects.count() == before + 250
    assert [one["username"] for one in shoppers] == [f"rehearsal-{n}" for n in range(1, 251)]
    assert get_user_model().objects.get(username="rehearsal-250").email == "rehearsal-250@example.com"
    for one in shoppers:
        assert access_token_verify(one["token"]).user_id == one["id"]
    assert client.get("/api/orders/", headers=auth(shoppers[-1]["token"])).status_code == 200
    login = client.post(
        "/api/auth/token/", {"username": "rehearsal-7", "password": "shared-pw-42"}, content_type="application/json"
    )
    assert login.status_code == 200


def test_shoppers_without_a_password_cannot_log_in_and_a_taken_prefix_is_a_clear_error(client: Client) -> None:
    [one] = json.loads(flashsale("shoppers", "1", "--prefix", "nopw", "--json"))["shoppers"]
    assert not get_user_model().objects.get(pk=one["id"]).has_usable_password()

    with pytest.raises(CommandError, match="prefix 'nopw' is taken"):
        flashsale("shoppers", "3", "--prefix", "nopw")
    with pytest.raises(CommandError, match="between 1 and"):
        flashsale("shoppers", "0")
    assert get_user_model().objects.filter(username__startswith="nopw-").count() == 1


def test_deactivate_names_a_user_by_username_or_id_and_says_what_it_revoked() -> None:
    ann, bob = make_user(username="ann"), make_user(username="bob")

    by_name = json.loads(flashsale("deactivate", "ann", "--json"))
    revoked_at_ms = int(str(inventory_redis().hget(REVOKED_KEY, str(ann.pk))))
    again = flashsale("deactivate", str(ann.pk))
    by_id = flashsale("deactivate", str(bob.pk))

    assert by_name["user_id"] == ann.pk and by_name["was_active"] is True
    assert by_name["revoked_at_ms"] == revoked_at_ms
    assert again.startswith(f"User {ann.pk} (ann): inactive (already).")
    assert by_id.startswith(f"User {bob.pk} (bob): inactive.")
    assert not get_user_model().objects.filter(is_active=True, pk__in=[ann.pk, bob.pk]).exists()
    with pytest.raises(CommandError, match="No user 'nobody'"):
        flashsale("deactivate", "nobody")
