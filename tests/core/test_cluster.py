"""Sale data on a Redis Cluster (docs/scale-out.md): one slot per sale, sales spread over the
masters, the events heard from any node, and a cluster nobody answers is a 503."""

from __future__ import annotations

import uuid

import pytest
import redis
from django.test import Client
from pytest_django.fixtures import Settings

from core.events import subscription
from core.redis_store import RedisUnavailable, inventory_redis, subscription_client
from devstack.localservers import LocalRedis, LocalRedisCluster, free_cluster_port
from sales import inventory, keys
from sales.models import FlashSale
from sales.purchase import purchase_attempt
from sales.warming import sale_warm
from tests.clients import purchase
from tests.factories import make_sale, make_shopper
from tests.polling import wait_for

pytestmark = pytest.mark.django_db


def _node_keys(node: LocalRedis) -> set[str]:
    with redis.Redis(host="127.0.0.1", port=node.port, decode_responses=True) as client:
        return set(client.keys("*"))


def _bought(sale_id: int, *, user_id: int) -> bool:
    try:
        answer = purchase_attempt(sale_id=sale_id, user_id=user_id)
    except RedisUnavailable:
        return False
    return answer.status in {"SUCCESS", "ALREADY_PURCHASED"}


def _warmed(sale: FlashSale) -> bool:
    try:
        sale_warm(sale=sale)
    except RedisUnavailable:
        return False
    return True


def _sales_on_two_masters(cluster: LocalRedisCluster) -> tuple[FlashSale, FlashSale]:
    first = make_sale(stock=5)
    master = cluster.master_of(keys.stock_key(first.pk))
    while True:
        other = make_sale(stock=5)
        if cluster.master_of(keys.stock_key(other.pk)) is not master:
            return first, other


def test_each_sale_lives_in_one_slot_and_two_sales_can_live_on_two_masters(on_cluster: LocalRedisCluster) -> None:
    # Given two sales whose hash tags fall on different masters
    first, second = _sales_on_two_masters(on_cluster)

    # When each sells a unit (the purchase script, its events, the order stream, the stats)
    for sale in (first, second):
        answer = inventory.purchase_run(sale_id=sale.pk, user_id=1, order_id=str(uuid.uuid4()))
        assert answer.status == "SUCCESS"

    # Then every key of a sale is on its own master, in its own slot, and nowhere else
    for sale in (first, second):
        master = on_cluster.master_of(keys.stock_key(sale.pk))
        prefix = keys.keyspace(sale.pk) + ":"
        on_master = {key for key in _node_keys(master) if key.startswith(prefix)}
        assert {keys.meta_key(sale.pk), keys.stock_key(sale.pk), keys.buyers_key(sale.pk)} <= on_master
        assert keys.orders_stream_key(sale.pk) in on_master
        slots = {inventory_redis().keyslot(key) for key in on_master}  # type: ignore[union-attr]
        assert len(slots) == 1
        for node in on_cluster.nodes:
            if node is not master:
                assert not {key for key in _node_keys(node) if key.startswith(prefix)}
    assert on_cluster.master_of(keys.stock_key(first.pk)) is not on_cluster.master_of(keys.stock_key(second.pk))
    # And reads across sales still work: one MGET per node
    assert inventory.remaining_stock_many([first.pk, second.pk]) == {first.pk: 4, second.pk: 4}


def test_a_win_on_one_master_is_heard_by_a_process_subscribed_on_another_node(
    on_cluster: LocalRedisCluster, settings: Settings
) -> None:
    # Given a sale, and this process's event subscription on a node that is not its master
    sale = make_sale(stock=5)
    master = on_cluster.master_of(keys.stock_key(sale.pk))
    elsewhere = next(node for node in on_cluster.nodes if node is not master)
    settings.REDIS_CLUSTER_URLS = [f"redis://127.0.0.1:{elsewhere.port}", *on_cluster.urls]
    inventory_redis.cache_clear()  # type: ignore[attr-defined]
    subscription.restart()
    assert subscription.wait_until_live(timeout=15)
    assert subscription_client(0).connection_pool.connection_kwargs["port"] == elsewhere.port
    heard = subscription.messages_heard

    # When a shopper wins a unit (the script PUBLISHes on the sale's master)
    assert purchase_attempt(sale_id=sale.pk, user_id=make_shopper()[0].pk).status == "SUCCESS"

    # Then the subscription on the other node hears it
    wait_for(lambda: subscription.messages_heard > heard, what="the win's event", timeout=15)


def test_the_subscription_moves_to_another_node_when_its_node_dies(own_cluster: LocalRedisCluster) -> None:
    # Given this process subscribed on the first node listed (a master)
    assert subscription.wait_until_live(timeout=15)
    first = own_cluster.nodes[0]
    [replica] = own_cluster.replicas_of(first)
    assert subscription_client(0).connection_pool.connection_kwargs["port"] == first.port

    # When that node is killed
    first.kill()

    # Then the subscription goes live again on another node and hears a win there (once the
    # killed master's replica took over its slots, and this process's client noticed)
    wait_for(lambda: not subscription.live, what="the subscription noticing", timeout=15)
    assert subscription.wait_until_live(timeout=30)
    own_cluster.wait_until_master(replica)
    sale = make_sale(stock=5, warm=False)
    wait_for(lambda: _warmed(sale), what="the sale loaded on the cluster", timeout=30)
    heard = subscription.messages_heard
    buyer = make_shopper()[0].pk
    wait_for(lambda: _bought(sale.pk, user_id=buyer), what="a purchase on a live master", timeout=30)
    wait_for(lambda: subscription.messages_heard > heard, what="the win's event", timeout=15)


def test_a_cluster_no_node_of_which_answers_is_a_503_with_retry_after(client: Client, settings: Settings) -> None:
    # Given a sale, and a cluster setting naming only a port nobody listens on
    sale = make_sale(stock=3)
    _, token = make_shopper()
    settings.REDIS_CLUSTER_URLS = [f"redis://127.0.0.1:{free_cluster_port()}"]
    inventory_redis.cache_clear()  # type: ignore[attr-defined]
    try:
        # When a shopper tries to buy
        response = purchase(client, sale.pk, token)
    finally:
        settings.REDIS_CLUSTER_URLS = []
        inventory_redis.cache_clear()  # type: ignore[attr-defined]

    # Then the answer is 503 UNAVAILABLE with Retry-After, and nothing was sold
    assert response.status_code == 503
    assert response.json()["status"] == "UNAVAILABLE"
    assert response["Retry-After"] == "1"
    assert inventory.sale_counts(sale.pk).remaining == 3
