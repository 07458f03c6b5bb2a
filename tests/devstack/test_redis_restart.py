"""Redis crashes (SIGKILL) and comes back from its append-only file: every long-running part
of the stack that talks to it carries on by itself, with no process restarted.

- the Celery worker, whose broker it is, while it holds an unacknowledged task;
- Celery beat, which publishes its schedule through it;
- the ws process's live hub (``wsdoor/hub.py``), fed by the process's subscription to the sale events;
- a web process's event subscription (``core/events.py``: the funnel's winners and sold-out
  markers, token revocations), subscribed to the same.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
import redis
from celery import Celery
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from core.events import subscription
from devstack.localservers import LocalRedis, free_port
from devstack.probes import BEAT_STARTED, celery_answers, redis_db_url
from orders.models import Order
from sales import keys
from sales.known import known_sales
from sales.purchase import purchase_attempt
from tests.factories import make_sale, make_shoppers, make_wins
from tests.polling import wait_for
from tests.processes import (
    OPEN_ADMISSION,
    TEST_SHAPE,
    Child,
    buyer_row_locked,
    child_env,
    start,
    start_worker,
    wait_for_http,
)

DRAIN_TASK = "orders.tasks.drain_sale_orders"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalRedis]:
    """A Redis of this test's own for Celery's broker, which the test may kill."""
    server = LocalRedis(data_dir=tmp_path / "broker", port=free_port()).start()
    yield server
    server.stop()


def _orders(sale_id: int) -> dict[int, str]:
    rows = Order.objects.filter(sale_id=sale_id).values_list("user_id", "id")
    return {user_id: str(order_id) for user_id, order_id in rows}


@pytest.mark.django_db(transaction=True)
def test_the_worker_survives_its_broker_being_killed_mid_task_and_drains_afterwards(broker: LocalRedis) -> None:
    # Given a worker of make run's shape (prefork, two processes) on a broker of its own, busy
    # with a long drain: an acks_late task whose message stays unacknowledged while the worker
    # waits on the broker for more. (Its own queue: the drain's confirmation tasks go to the
    # default one, so nothing else is in hand.)
    broker_url = redis_db_url(broker.url, 1)
    queue = "broker-restart"
    sale = make_sale(stock=3001, bucket_capacity=5000)
    crowd = [user_id for user_id, _ in make_shoppers(3001)]
    won = make_wins(sale.pk, crowd[:3000])
    worker = start_worker(
        name="broker-blip", queue=queue, pool="prefork", CELERY_BROKER_URL=broker_url, FLASHSALE_DRAIN_BATCH_SIZE="2"
    )
    tasks = Celery("broker-restart-test", broker=broker_url, set_as_current=False)
    try:
        # (The drain is held at its eleventh batch until the broker is down, however fast it is.)
        with buyer_row_locked(crowd[20]):
            tasks.send_task(DRAIN_TASK, args=(sale.pk,), queue=queue)
            wait_for(lambda: Order.objects.filter(sale=sale).count() == 20, what="the first orders", timeout=60)

            # When its broker is SIGKILLed mid-task and comes back from its append-only file
            broker.kill()
        broker.start()

        # Then the same worker process answers on the broker again and drains a win made after
        node = worker.env["NODE"]
        worker.wait_until(lambda: celery_answers(broker_url, node, timeout=0.5), what="answer a ping", timeout=90)
        won |= make_wins(sale.pk, crowd[3000:])
        tasks.close()  # This process's connections died with the broker.
        tasks = Celery("broker-restart-test", broker=broker_url, set_as_current=False)
        tasks.send_task(DRAIN_TASK, args=(sale.pk,), queue=queue)
        wait_for(lambda: len(_orders(sale.pk)) == 3001, what="every order drained", timeout=180)
        assert worker.process.poll() is None, worker.log_tail()
        assert "Unrecoverable error" not in worker.log.read_text(errors="replace")
    finally:
        worker.stop()
        tasks.close()
    assert _orders(sale.pk) == won


def test_beat_publishes_its_schedule_again_after_its_broker_restarts(broker: LocalRedis, tmp_path: Path) -> None:
    # Given beat publishing a one-second reconcile tick to a broker of its own
    broker_url = redis_db_url(broker.url, 1)
    env = child_env(CELERY_BROKER_URL=broker_url, FLASHSALE_RECONCILE_INTERVAL_SECONDS="1")
    beat = start("beat", TEST_SHAPE.but(beat_schedule=tmp_path / "celerybeat-schedule"), env)
    queue = redis.Redis.from_url(broker_url)
    try:
        beat.wait_until(lambda: BEAT_STARTED in beat.log_tail(200), what="start", timeout=60)
        wait_for(lambda: queue.llen("celery") > 0, what="a first tick", timeout=30)

        # When the broker is SIGKILLed while beat keeps ticking, and comes back
        broker.kill()
        time.sleep(2)  # Ticks fall due while it is down.
        broker.start()
        queue.delete("celery")

        # Then the same beat process publishes again (other one-second ticks besides)
        wait_for(
            lambda: "orders.tasks.reconcile_sales" in _ticks(queue),
            what="a reconcile tick after the restart",
            timeout=60,
        )
        assert beat.process.poll() is None, beat.log_tail()
    finally:
        beat.stop()
        queue.close()


def _ticks(queue: redis.Redis) -> set[str]:
    """The tasks of the messages waiting in Celery's default queue."""
    return {json.loads(message)["headers"]["task"] for message in queue.lrange("celery", 0, -1)}  # type: ignore[union-attr]


def _next_of(socket: ClientConnection, kind: str) -> dict[str, object]:
    while True:
        message = json.loads(socket.recv(timeout=60))
        if message["type"] == kind:
            return message  # type: ignore[no-any-return]


@pytest.mark.django_db(transaction=True)
def test_the_live_hub_subscribes_again_after_redis_restarts(own_redis: LocalRedis) -> None:
    # Given a ws process on a Redis of the test's own and a socket watching a live sale
    sale = make_sale(stock=5)
    [(buyer, _)] = make_shoppers(1)
    port = free_port()
    env = child_env(REDIS_URL=own_redis.url, **OPEN_ADMISSION)
    ws: Child = start("ws", TEST_SHAPE.but(ws_port=port), env, port=port)
    try:
        wait_for_http(ws, "/healthz")
        with connect(f"ws://127.0.0.1:{port}/ws/sales/{sale.pk}/", origin=Origin("http://127.0.0.1")) as socket:
            # (Its append-only file is written and fsynced before each answer: the sale survives.)
            assert _next_of(socket, "hello")["remaining_stock"] == 5

            # When Redis is SIGKILLed and comes back
            own_redis.kill()
            own_redis.start()
            _wait_for_subscriber(own_redis.url)

            # Then the same process hears a purchase made after the restart
            assert purchase_attempt(sale_id=sale.pk, user_id=buyer).status == "SUCCESS"
            assert _next_of(socket, "stock")["remaining_stock"] == 4
        assert ws.process.poll() is None, ws.log_tail()
    finally:
        ws.stop()


def _wait_for_subscriber(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        wait_for(
            lambda: dict(client.pubsub_numsub(keys.EVENTS_CHANNEL)).get(keys.EVENTS_CHANNEL.encode(), 0) > 0,
            what="a subscriber to the sale events",
            timeout=60,
        )
    finally:
        client.close()


@pytest.mark.django_db
def test_the_event_subscription_comes_back_after_redis_restarts(own_redis: LocalRedis) -> None:
    # Given this process's event subscription, on a Redis of the test's own
    assert subscription.wait_until_live(timeout=30)

    # When Redis is SIGKILLed, the subscription drops (and the funnel its markers); when it
    # comes back ...
    own_redis.kill()
    wait_for(lambda: not subscription.live, what="the listener to notice", timeout=30)
    own_redis.start()

    # ... it subscribes again and hears what is published after
    assert subscription.wait_until_live(timeout=60)
    sale = make_sale(stock=1)
    heard = subscription.messages_heard
    [(buyer, _)] = make_shoppers(1)
    assert purchase_attempt(sale_id=sale.pk, user_id=buyer).status == "SUCCESS"
    wait_for(lambda: subscription.messages_heard > heard, what="the purchase event", timeout=30)
    assert known_sales.sold_out(sale.pk)


@pytest.mark.django_db(transaction=True)
def test_the_sales_log_resumes_after_a_restart_from_the_aof_with_no_gap_and_no_reuse(own_redis: LocalRedis) -> None:
    # Given a sale whose attempts were logged with seq 0..4 (five winners)
    sale = make_sale(stock=20)
    shoppers = make_shoppers(10)
    before = [purchase_attempt(sale_id=sale.pk, user_id=user_id) for user_id, _ in shoppers[:5]]
    assert [answer.receipt["seq"] for answer in before if answer.receipt] == [0, 1, 2, 3, 4]

    # When Redis is killed and comes back from its append-only file
    own_redis.kill()
    own_redis.start()
    client = redis.Redis.from_url(own_redis.url, decode_responses=True)
    wait_for(lambda: _answers(client), what="Redis to load its AOF", timeout=30)

    # Then the next attempts carry on from 5, and the stream holds 0..9 exactly once each
    after = [purchase_attempt(sale_id=sale.pk, user_id=user_id) for user_id, _ in shoppers[5:]]
    assert [answer.receipt["seq"] for answer in after if answer.receipt] == [5, 6, 7, 8, 9]
    stream = cast(list[tuple[str, dict[str, str]]], client.xrange(keys.log_stream_key(sale.pk)))
    logged = [int(fields["seq"]) for _, fields in stream]
    assert logged == list(range(10))
    client.close()


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
