"""The hand-off of every win from Redis to PostgreSQL: idempotent, crash-safe, reconciled."""

from __future__ import annotations

import httpx
import pytest
from django.utils import timezone

from orders.drain import sale_backlog, sale_orders_drain
from orders.models import Order
from orders.reconciliation import sale_reconcile
from orders.services import order_confirmations_send
from orders.tasks import drain_sale_orders, reconcile_sales
from sales import inventory, keys
from sales.purchase import purchase_attempt
from tests.factories import auth, make_sale, make_shoppers, make_user, make_wins
from tests.polling import wait_for
from tests.processes import ChildProcess, buyer_row_locked, start_web, start_worker


def _orders(sale_id: int) -> dict[int, str]:
    return {
        user_id: str(order_id)
        for user_id, order_id in Order.objects.filter(sale_id=sale_id).values_list("user_id", "id")
    }


def _pending(sale_id: int) -> int:
    summary = inventory.inventory_redis().xpending(keys.orders_stream_key(sale_id), keys.ORDERS_GROUP)
    return int(summary["pending"])


def _all_idle_past(sale_id: int, idle_ms: int) -> bool:
    """Every entry delivered and not acknowledged has waited longer than ``idle_ms``."""
    held = inventory.inventory_redis().xpending_range(
        keys.orders_stream_key(sale_id), keys.ORDERS_GROUP, min="-", max="+", count=10_000
    )
    return bool(held) and all(int(entry["time_since_delivered"]) > idle_ms for entry in held)


@pytest.mark.django_db
@pytest.mark.usefixtures("sale_data")  # on one Redis and on a Redis Cluster
def test_draining_turns_each_stream_entry_into_one_order_with_the_same_id() -> None:
    sale = make_sale(stock=5)
    won = make_wins(sale.pk, [user_id for user_id, _ in make_shoppers(3)])

    result = sale_orders_drain(sale_id=sale.pk)

    assert (result.delivered, result.claimed) == (3, 0)
    assert _orders(sale.pk) == won
    order = Order.objects.get(id=won[next(iter(won))])
    assert order.unit_price == sale.price
    assert order.status == "PENDING"
    assert sale_backlog(sale.pk) == 0
    assert sale_orders_drain(sale_id=sale.pk).delivered == 0


@pytest.mark.django_db
@pytest.mark.usefixtures("sale_data")  # on one Redis and on a Redis Cluster
def test_entries_a_worker_took_and_committed_but_never_acknowledged_end_as_the_same_orders() -> None:
    # Given a worker ("ghost") that read three entries, committed their orders, then died
    # before XACK: the entries are still pending under its name.
    sale = make_sale(stock=5)
    won = make_wins(sale.pk, [user_id for user_id, _ in make_shoppers(3)])
    client = inventory.inventory_redis()
    stream = keys.orders_stream_key(sale.pk)
    client.xgroup_create(stream, keys.ORDERS_GROUP, id="0")
    delivered: list = client.xreadgroup(keys.ORDERS_GROUP, "ghost", {stream: ">"}, count=10)  # type: ignore[assignment]
    assert len(delivered[0][1]) == 3
    for user_id, order_id in won.items():
        Order.objects.create(id=order_id, sale=sale, user_id=user_id, unit_price=sale.price, created_at=timezone.now())
    assert sale_backlog(sale.pk) == 3

    # When another worker drains and reclaims what the ghost held
    result = sale_orders_drain(sale_id=sale.pk, consumer="survivor", claim_idle_ms=0)

    # Then the entries are replayed onto the same rows: no duplicate, nothing pending
    assert result.claimed == 3
    assert _orders(sale.pk) == won
    assert Order.objects.filter(sale=sale).count() == 3
    assert _pending(sale.pk) == 0


@pytest.mark.django_db
def test_an_entry_that_cannot_become_an_order_goes_to_the_dead_letter_stream_and_the_rest_go_through() -> None:
    sale = make_sale(stock=5)
    won = make_wins(sale.pk, [user_id for user_id, _ in make_shoppers(2)])
    # A buyer whose account no longer exists in PostgreSQL (foreign key fails).
    orphan = purchase_attempt(sale_id=sale.pk, user_id=987_654_321)
    assert orphan.status == "SUCCESS"

    sale_orders_drain(sale_id=sale.pk)

    assert _orders(sale.pk) == won
    dead: list = inventory.inventory_redis().xrange(keys.dead_letter_key(sale.pk))  # type: ignore[assignment]
    assert len(dead) == 1
    assert dead[0][1]["reason"].startswith("insert refused")
    assert _pending(sale.pk) == 0


@pytest.mark.django_db
def test_a_confirmation_email_names_the_product_the_price_and_the_order_and_goes_out_once(mailoutbox: list) -> None:
    sale = make_sale(stock=5)
    user = make_user(email="buyer@example.com")
    won = make_wins(sale.pk, [user.pk])
    sale_orders_drain(sale_id=sale.pk)
    order_id = won[user.pk]

    assert order_confirmations_send(order_ids=[order_id]) == 1
    assert order_confirmations_send(order_ids=[order_id]) == 0

    (message,) = mailoutbox
    assert message.to == ["buyer@example.com"]
    assert message.subject == f"Your order for {sale.product.name} is confirmed ({order_id})"
    assert f"one {sale.product.name} at $1.00" in message.body
    assert f"Order id: {order_id}" in message.body
    assert order_id in message.alternatives[0][0]
    assert Order.objects.get(id=order_id).confirmation_sent_at is not None


@pytest.mark.django_db
def test_a_buyer_without_an_email_address_is_marked_confirmed_without_a_message(mailoutbox: list) -> None:
    sale = make_sale(stock=5)
    user = make_user(email="")
    won = make_wins(sale.pk, [user.pk])
    sale_orders_drain(sale_id=sale.pk)

    assert order_confirmations_send(order_ids=[won[user.pk]]) == 0
    assert mailoutbox == []
    assert Order.objects.get(id=won[user.pk]).confirmation_sent_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_drain_leaves_exactly_one_order_per_buyer_once_another_worker_takes_over() -> None:
    # Given 2,000 won units waiting in the stream
    sale = make_sale(stock=2000, bucket_capacity=5000)
    buyers = [user_id for user_id, _ in make_shoppers(2000)]
    won = make_wins(sale.pk, buyers)
    settings_for_test = {"FLASHSALE_CLAIM_IDLE_MS": "1000", "FLASHSALE_DRAIN_BATCH_SIZE": "5"}
    # A queue of this test's own: only its two workers may drain this sale.
    queue = f"crash-test-{sale.pk}"
    first: ChildProcess = start_worker(name="doomed", queue=queue, **settings_for_test)
    try:
        # When a worker drains them in small batches and is SIGKILLed mid-way (held at the
        # eleventh batch, however fast it is)
        with buyer_row_locked(buyers[50]):
            drain_sale_orders.apply_async((sale.pk,), queue=queue)
            wait_for(lambda: Order.objects.filter(sale=sale).count() == 50, what="the first ten batches", timeout=60)
            first.kill()
    finally:
        first.stop()
    at_kill = Order.objects.filter(sale=sale).count()
    assert at_kill == 50

    # Then a new worker reclaims what the dead one held and finishes the job
    second = start_worker(name="survivor", queue=queue, **settings_for_test)
    try:
        wait_for(lambda: _all_idle_past(sale.pk, 1000), what="the dead worker's entries past the claim idle time")
        drain_sale_orders.apply_async((sale.pk,), queue=queue)
        wait_for(lambda: Order.objects.filter(sale=sale).count() >= 2000 and _pending(sale.pk) == 0, what="all orders")
    finally:
        second.stop()
    assert _orders(sale.pk) == won
    assert Order.objects.filter(sale=sale).count() == 2000
    assert sale_backlog(sale.pk) == 0


@pytest.mark.django_db(transaction=True)
def test_reconciliation_by_the_worker_recreates_a_deleted_order(celery_worker: ChildProcess) -> None:
    sale = make_sale(stock=5)
    won = make_wins(sale.pk, [user_id for user_id, _ in make_shoppers(4)])
    sale_orders_drain(sale_id=sale.pk)
    lost_user, lost_order = next(iter(won.items()))
    Order.objects.filter(id=lost_order).delete()

    reconcile_sales.delay()

    wait_for(lambda: Order.objects.filter(id=lost_order).exists(), what="the repair", timeout=30)
    assert _orders(sale.pk) == won
    assert Order.objects.get(id=lost_order).user_id == lost_user
    assert inventory.inventory_redis().hget(keys.reconcile_key(sale.pk), "repairs") == "1"


@pytest.mark.django_db
@pytest.mark.usefixtures("sale_data")  # on one Redis and on a Redis Cluster
def test_reconciliation_reports_a_tampered_stock_counter_and_leaves_it_for_a_person() -> None:
    sale = make_sale(stock=10)
    make_wins(sale.pk, [user_id for user_id, _ in make_shoppers(3)])
    inventory.inventory_redis().set(keys.stock_key(sale.pk), 9)  # 9 + 3 buyers != 10

    report = sale_reconcile(sale_id=sale.pk)

    assert report.i1_holds is False
    assert (report.remaining, report.buyers, report.total) == (9, 3, 10)
    assert report.i2_holds is True  # The orders themselves are fine.
    assert inventory.inventory_redis().get(keys.stock_key(sale.pk)) == "9"
    assert inventory.inventory_redis().hget(keys.reconcile_key(sale.pk), "violations_i1") == "1"


@pytest.mark.django_db
@pytest.mark.usefixtures("sale_data")  # on one Redis and on a Redis Cluster
def test_reconciliation_reports_an_order_postgresql_has_and_redis_does_not() -> None:
    sale = make_sale(stock=10)
    won = make_wins(sale.pk, [user_id for user_id, _ in make_shoppers(2)])
    sale_orders_drain(sale_id=sale.pk)
    stranger = make_user()
    Order.objects.create(sale=sale, user=stranger, unit_price=sale.price, created_at=timezone.now())

    report = sale_reconcile(sale_id=sale.pk)

    assert report.i1_holds is True
    assert report.i2_holds is False
    assert len(report.unexplained) == 1
    assert report.unexplained[0].startswith(f"user {stranger.pk}: order ")
    assert report.repaired == []
    assert set(_orders(sale.pk)) == {*won, stranger.pk}


@pytest.mark.django_db(transaction=True)
def test_a_win_inside_the_kick_window_after_a_drain_still_reaches_postgresql_without_beat(
    celery_worker: ChildProcess,
) -> None:
    # A wide kick window: the second win is certain to land in it, after the first drain.
    server = start_web(env={"FLASHSALE_DRAIN_KICK_MS": "3000", "ANTIBOT_USER_LIMIT": "0", "ANTIBOT_IP_LIMIT": "0"})
    try:
        sale = make_sale(stock=5)
        (_, first), (_, second) = make_shoppers(2)
        url = f"{server.url}/api/sales/{sale.pk}/purchase/"
        one = httpx.post(url, json={}, headers=auth(first), timeout=10).json()["order_id"]
        wait_for(lambda: Order.objects.filter(id=one).exists(), what="the kicked drain", timeout=30)
        two = httpx.post(url, json={}, headers=auth(second), timeout=10).json()["order_id"]
        assert int(inventory.inventory_redis().pttl(keys.drain_kick_key(sale.pk))) > 0  # Still in the window.

        wait_for(lambda: Order.objects.filter(id=two).exists(), what="the trailing drain", timeout=30)
    finally:
        server.stop()
