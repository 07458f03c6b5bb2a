"""Signed webhooks against a real receiver on loopback and real Celery workers: delivery at
least once, in event order per order, retried while the receiver is down, the same
webhook-id on every attempt, dead letters and replay, pausing, the SSRF guard, and a worker
killed during a delivery."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections import defaultdict
from datetime import UTC, datetime

import psutil
import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings
from standardwebhooks import Webhook

from orders.destinations import DestinationRefused
from orders.drain import sale_orders_drain
from orders.models import (
    DeliveryStatus,
    Order,
    OrderStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    WebhookEventType,
)
from orders.services import order_mark_paid, order_release
from orders.webhooks import (
    SWEEP_GRACE,
    PrivateAddressesNotPermitted,
    deliveries_overdue_send,
    endpoint_add,
    endpoint_remove,
    endpoint_resume,
    endpoint_rotate,
    events_record,
    order_deliveries_run,
    secret_generate,
)
from sales import inventory
from tests.factories import make_sale, make_shoppers, make_user, make_wins
from tests.polling import wait_for
from tests.processes import ChildProcess, start_worker

from .conftest import PATIENT, deliveries_to
from .receiver import Receiver

pytestmark = pytest.mark.django_db(transaction=True)
ALL_EVENTS = ",".join(WebhookEventType.values)


def register(receiver: Receiver, **options: object) -> WebhookEndpoint:
    return endpoint_add(
        url=receiver.url,
        events=WebhookEventType.values,
        secret=receiver.secret,
        allow_private=True,
        **options,  # type: ignore[arg-type]
    )


def orders_won(count: int) -> list[Order]:
    """``count`` orders drained in this process (as the worker drains them): order.created
    is recorded in the drain's transaction and its deliveries sent once it commits."""
    sale = make_sale(stock=count + 5)
    make_wins(sale.pk, [user_id for user_id, _ in make_shoppers(count)])
    sale_orders_drain(sale_id=sale.pk)
    return list(Order.objects.filter(sale=sale).order_by("created_at"))


def deliveries(status: str | None = None) -> list[WebhookDelivery]:
    rows = WebhookDelivery.objects.select_related("event")
    return list(rows if status is None else rows.filter(status=status))


def test_events_sent_while_the_receiver_is_down_all_arrive_once_in_order_per_order_when_it_is_back(
    patient_worker: ChildProcess, settings: Settings
) -> None:
    # Given an endpoint whose receiver is down (nothing listens on its port)
    deliveries_to(patient_worker, settings)
    receiver = Receiver(secret=secret_generate())
    register(receiver)

    # When five orders are won, two paid, one expired and one cancelled meanwhile
    orders = orders_won(5)
    order_mark_paid(order=orders[0])
    order_mark_paid(order=orders[1])
    order_release(order=orders[2], status=OrderStatus.EXPIRED)
    order_release(order=orders[3], status=OrderStatus.CANCELLED)
    assert WebhookEvent.objects.count() == 9
    # and every delivery has failed at least twice (an order's later events wait behind its first)
    wait_for(
        lambda: (
            all(d.attempts >= 2 for d in deliveries() if d.sequence == 1)
            and not WebhookDelivery.objects.exclude(status=DeliveryStatus.PENDING).exists()
        ),
        what="every first delivery to fail twice",
        timeout=60,
    )
    assert all(d.attempts == 0 for d in deliveries() if d.sequence == 2), "a later event went before the first"

    # Then once the receiver is back, every event arrives
    receiver.start()
    try:
        wait_for(lambda: len(deliveries(DeliveryStatus.DELIVERED)) == 9, what="all nine delivered", timeout=60)
    finally:
        receiver.stop()

    accepted = receiver.accepted()
    events = {event.pk: event for event in WebhookEvent.objects.all()}
    # each once under its own webhook-id, signed, with the body recorded for it
    assert sorted(one.webhook_id for one in accepted) == sorted(events)
    assert all(one.signed for one in accepted)
    assert all(one.body == events[one.webhook_id].body for one in accepted)
    # in event order per order: created first, then what happened to the order
    arrived: dict[str, list[str]] = defaultdict(list)
    for one in accepted:
        arrived[one.order_id].append(one.type)
    assert arrived == {
        str(orders[0].pk): ["order.created", "order.paid"],
        str(orders[1].pk): ["order.created", "order.paid"],
        str(orders[2].pk): ["order.created", "order.expired"],
        str(orders[3].pk): ["order.created", "order.cancelled"],
        str(orders[4].pk): ["order.created"],
    }
    paid = json.loads(events[next(one.webhook_id for one in accepted if one.type == "order.paid")].body)
    assert set(paid) == {"type", "timestamp", "data"}
    assert paid["data"]["order"]["status"] == "PAID"
    assert set(paid["data"]["order"]) >= {"id", "sale_id", "status", "sale", "buyer"}
    assert paid["data"]["order"]["buyer"]["username"].startswith("crowd")


def test_a_refused_attempt_is_retried_with_the_same_webhook_id_and_body_and_a_fresh_signature(
    patient_worker: ChildProcess, settings: Settings, receiver: Receiver
) -> None:
    # Given a receiver that answers 503 to the first two attempts of every message
    deliveries_to(patient_worker, settings)
    receiver.answer = lambda request: 503 if len(receiver.requests(webhook_id=request.webhook_id)) <= 2 else 204
    register(receiver)

    # When an order is won
    (order,) = orders_won(1)

    # Then its order.created arrives on the third attempt, every attempt under one webhook-id
    wait_for(lambda: len(deliveries(DeliveryStatus.DELIVERED)) == 1, what="the delivery", timeout=60)
    (event,) = WebhookEvent.objects.all()
    attempts = receiver.requests(webhook_id=event.pk)
    assert [one.answered for one in attempts] == [503, 503, 204]
    assert {one.body for one in attempts} == {event.body}
    assert all(one.signed for one in attempts)
    for one in attempts:  # the signature is "v1,<base64 HMAC of id.timestamp.body>" for that attempt
        assert one.signature == Webhook(receiver.secret).sign(
            event.pk, datetime.fromtimestamp(int(one.timestamp), tz=UTC), event.body
        )
    assert WebhookDelivery.objects.get().attempts == 3
    assert json.loads(event.body)["data"]["order"]["id"] == str(order.pk)


def test_a_delivery_that_runs_out_of_retries_is_a_dead_letter_the_next_event_goes_and_replay_resends_it(
    short_worker: ChildProcess, settings: Settings, receiver: Receiver
) -> None:
    # Given a receiver that refuses every order.created and takes everything else
    deliveries_to(short_worker, settings)
    refuse = {"created": True}
    receiver.answer = lambda request: 500 if refuse["created"] and request.type == "order.created" else 204
    endpoint = register(receiver)
    (order,) = orders_won(1)

    # When the schedule (four attempts) is spent
    wait_for(lambda: len(deliveries(DeliveryStatus.DEAD)) == 1, what="a dead letter", timeout=60)
    dead = WebhookDelivery.objects.get(status=DeliveryStatus.DEAD)
    assert dead.attempts == 4
    assert dead.last_status_code == 500
    # Then the order's next event is not held behind it
    order_mark_paid(order=order)
    wait_for(lambda: len(deliveries(DeliveryStatus.DELIVERED)) == 1, what="order.paid delivered", timeout=60)
    assert [one.type for one in receiver.accepted()] == ["order.paid"]

    # And the admin lists it among the dead letters and replays it with its original webhook-id
    admin = make_user(username="root")
    admin.is_staff = admin.is_superuser = True
    admin.save()
    client = Client()
    client.force_login(admin)
    listing = client.get("/admin/orders/deadletter/").content.decode()
    assert dead.event_id in listing
    refuse["created"] = False
    replayed = client.post(
        "/admin/orders/deadletter/", {"action": "replay", "_selected_action": [dead.pk]}, follow=True
    ).content.decode()
    assert "1 dead letter(s) sent again." in replayed
    wait_for(lambda: len(deliveries(DeliveryStatus.DELIVERED)) == 2, what="the replayed delivery", timeout=60)
    assert [one.webhook_id for one in receiver.accepted()] == [
        WebhookEvent.objects.get(type="order.paid").pk,
        dead.event_id,
    ]
    assert WebhookDelivery.objects.get(pk=dead.pk).replays == 1
    assert endpoint.pk == dead.endpoint_id


def test_an_endpoint_that_keeps_failing_is_paused_the_admin_says_so_and_resuming_delivers_what_waited(
    short_worker: ChildProcess, settings: Settings, receiver: Receiver
) -> None:
    # Given a receiver that answers 503 to everything
    deliveries_to(short_worker, settings)
    receiver.answer = lambda request: 503
    endpoint = register(receiver)

    # When three orders' events fail six times in a row
    orders_won(3)
    wait_for(lambda: WebhookEndpoint.objects.get(pk=endpoint.pk).paused_at is not None, what="the pause", timeout=60)

    # Then the endpoint is paused after the sixth failure, and nothing more is sent to it
    endpoint.refresh_from_db()
    assert endpoint.consecutive_failures == 6
    assert len(receiver.requests()) == 6
    assert "6 failed attempts in a row" in endpoint.pause_reason
    waiting = [d for d in deliveries() if d.status == DeliveryStatus.PENDING]
    assert waiting
    for delivery in waiting:
        assert order_deliveries_run(endpoint_id=endpoint.pk, order_id=str(delivery.order_id)).delivered == 0
    assert len(receiver.requests()) == 6
    admin = make_user(username="boss")
    admin.is_staff = admin.is_superuser = True
    admin.save()
    client = Client()
    client.force_login(admin)
    page = client.get("/admin/orders/webhookendpoint/").content.decode()
    assert f"Endpoint {endpoint.pk} ({receiver.url}) is paused" in page
    assert "PAUSED since" in page

    # And once resumed with the receiver healthy, what waited is delivered
    receiver.answer = lambda request: 204
    endpoint_resume(endpoint=endpoint)
    wait_for(
        lambda: not WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING).exists(),
        what="the waiting deliveries",
        timeout=60,
    )
    assert len(receiver.accepted()) == len(waiting)


def test_a_410_gone_pauses_the_endpoint_at_once(
    short_worker: ChildProcess, settings: Settings, receiver: Receiver
) -> None:
    deliveries_to(short_worker, settings)
    receiver.answer = lambda request: 410
    endpoint = register(receiver)

    orders_won(1)

    wait_for(lambda: WebhookEndpoint.objects.get(pk=endpoint.pk).paused_at is not None, what="the pause", timeout=60)
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).pause_reason == "the receiver answered 410 Gone"
    assert WebhookDelivery.objects.get().status == DeliveryStatus.PENDING
    assert len(receiver.requests()) == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hooks/",
        "http://localhost:9/hooks/",
        "http://[::1]:9/",
        "http://[::ffff:127.0.0.1]:9/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/",
        "http://192.168.0.10/",
        "http://100.64.0.1/",
        "http://0.0.0.0:9/",
    ],
)
def test_a_url_reaching_a_loopback_link_local_or_private_address_is_refused_at_registration(url: str) -> None:
    with pytest.raises(DestinationRefused, match="loopback, link-local or private"):
        endpoint_add(url=url, events=["order.created"])
    with pytest.raises(CommandError, match="server-side request forgery"):
        call_command("flashsale", "webhooks", "add", url, "--events", "order.created")
    assert not WebhookEndpoint.objects.exists()


def test_allow_private_needs_the_settings_permission(settings: Settings, receiver: Receiver) -> None:
    settings.WEBHOOKS_ALLOW_PRIVATE_OPT_IN = False
    with pytest.raises(PrivateAddressesNotPermitted):
        endpoint_add(url=receiver.url, events=["order.created"], allow_private=True)
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    assert endpoint_add(url=receiver.url, events=["order.created"]).pk


def test_a_url_that_resolves_to_a_private_address_at_delivery_is_refused_and_nothing_is_sent(
    settings: Settings, receiver: Receiver
) -> None:
    # Given an endpoint that passed registration (its name resolved elsewhere then) and now
    # resolves to loopback, without the allow-private flag
    settings.WEBHOOKS_QUEUE = "nobody-consumes-this"
    endpoint = WebhookEndpoint.objects.create(
        url=receiver.url, events=["order.created"], secret=receiver.secret, allow_private=False
    )
    (order,) = orders_won(1)

    # When its delivery is attempted
    result = order_deliveries_run(endpoint_id=endpoint.pk, order_id=str(order.pk))

    # Then it is refused before any request, and retried later like any failure
    delivery = WebhookDelivery.objects.get()
    assert (result.delivered, result.failed) == (0, 1)
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.last_error.startswith("refused before sending: 127.0.0.1 resolves to 127.0.0.1")
    assert receiver.requests() == []


def test_the_command_adds_lists_rotates_and_removes_endpoints(
    receiver: Receiver, capsys: pytest.CaptureFixture
) -> None:
    secret = secret_generate()
    call_command(
        "flashsale", "webhooks", "add", receiver.url, "--events", "order.created,order.paid",
        "--secret", secret, "--allow-private", "--json",
    )  # fmt: skip
    added = json.loads(capsys.readouterr().out)
    assert added["events"] == ["order.created", "order.paid"]
    assert added["secret"] == secret
    with pytest.raises(CommandError, match="holds 24 to 64"):
        call_command(
            "flashsale", "webhooks", "add", receiver.url, "--events", "order.paid", "--secret", "whsec_c2hvcnQ="
        )
    with pytest.raises(CommandError, match="Unknown event"):
        call_command("flashsale", "webhooks", "add", receiver.url, "--events", "order.shipped", "--allow-private")

    call_command("flashsale", "webhooks", "list", "--json")
    (listed,) = json.loads(capsys.readouterr().out)["endpoints"]
    assert (listed["id"], listed["state"], listed["pending"]) == (added["id"], "delivering", 0)

    call_command("flashsale", "webhooks", "rotate", str(added["id"]), "--json")
    rotated = json.loads(capsys.readouterr().out)
    endpoint = WebhookEndpoint.objects.get(pk=added["id"])
    assert endpoint.secret == rotated["secret"] != secret
    assert endpoint.previous_secret == secret

    call_command("flashsale", "webhooks", "remove", str(added["id"]))
    assert not WebhookEndpoint.objects.exists()


def test_during_a_rotation_both_secrets_sign(
    patient_worker: ChildProcess, settings: Settings, receiver: Receiver
) -> None:
    # Given a receiver that still knows only the old secret, and one that knows only the new
    deliveries_to(patient_worker, settings)
    endpoint = register(receiver)
    old = receiver.secret
    endpoint_rotate(endpoint=endpoint)

    # When an order is won
    orders_won(1)

    # Then its delivery verifies with either secret
    wait_for(lambda: len(receiver.accepted()) == 1, what="the delivery", timeout=60)
    (one,) = receiver.accepted()
    headers = {"webhook-id": one.webhook_id, "webhook-timestamp": one.timestamp, "webhook-signature": one.signature}
    Webhook(old).verify(one.body, headers)
    Webhook(WebhookEndpoint.objects.get().secret).verify(one.body, headers)
    assert len(one.signature.split(" ")) == 2


def _child_sending_to(worker: ChildProcess, port: int) -> psutil.Process:
    for child in psutil.Process(worker.pid).children(recursive=True):
        try:
            if any(conn.raddr and conn.raddr.port == port for conn in child.net_connections(kind="tcp")):
                return child
        except psutil.NoSuchProcess:
            continue
    raise AssertionError("no pool process holds a connection to the receiver")


def test_a_worker_process_killed_during_a_delivery_is_retried_and_the_event_arrives(
    settings: Settings, receiver: Receiver
) -> None:
    # Given a prefork worker and a receiver that holds the first request open
    queue = f"webhooks-kill-{os.getpid()}"
    worker = start_worker(name="webhooks-kill", queue=queue, pool="prefork", WEBHOOKS_QUEUE=queue, **PATIENT)
    try:
        settings.WEBHOOKS_QUEUE = queue
        receiver.answer = lambda request: None if len(receiver.requests()) == 1 else 204
        register(receiver)
        orders_won(1)
        wait_for(lambda: len(receiver.requests()) == 1, what="the first request", timeout=60)

        # When the pool process sending it is SIGKILLed mid-request
        victim = _child_sending_to(worker, receiver.port)
        os.kill(victim.pid, signal.SIGKILL)

        # Then the task goes back to the queue, another process sends it again, and it arrives
        wait_for(lambda: len(deliveries(DeliveryStatus.DELIVERED)) == 1, what="the delivery", timeout=90)
    finally:
        receiver.release()
        worker.stop()
    (event,) = WebhookEvent.objects.all()
    sent = receiver.requests(webhook_id=event.pk)
    assert len(sent) == 2  # the killed attempt and the one after it, under one webhook-id
    assert {one.body for one in sent} == {event.body}
    assert WebhookDelivery.objects.get().attempts == 1  # the killed attempt left no trace


def test_a_delivery_whose_worker_died_with_its_task_is_sent_again_by_beats_sweep(
    settings: Settings, receiver: Receiver
) -> None:
    # Given a delivery whose task was lost (sent to a queue no worker will ever read)
    settings.WEBHOOKS_QUEUE = "lost-with-its-worker"
    register(receiver)
    (order,) = orders_won(1)
    assert WebhookDelivery.objects.get().attempts == 0
    queue = f"webhooks-sweep-{os.getpid()}"
    worker = start_worker(name="webhooks-sweep", queue=queue, WEBHOOKS_QUEUE=queue, **PATIENT)
    try:
        settings.WEBHOOKS_QUEUE = queue
        # When beat's sweep runs once the delivery is overdue by its grace
        sent = deliveries_overdue_send(now=timezone.now() + SWEEP_GRACE)

        # Then it sends the chain again and the event arrives
        assert sent == 1
        wait_for(lambda: len(receiver.accepted()) == 1, what="the delivery", timeout=60)
    finally:
        worker.stop()
    assert receiver.accepted()[0].order_id == str(order.pk)
    assert inventory.sale_counts(order.sale_id).buyers == 1


def _in_thread(work: object, into: dict[str, object], name: str) -> threading.Thread:
    """``work()`` on a thread of its own (its own database connection), its result or error
    kept in ``into[name]``."""

    def run() -> None:
        try:
            into[name] = work()  # type: ignore[operator]
        except Exception as error:  # noqa: BLE001 - the test looks at it
            into[name] = error
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _held_open(work: object, into: dict[str, object], name: str) -> tuple[threading.Thread, threading.Event]:
    """``work()`` inside a transaction on a thread of its own, left uncommitted: returns once
    it ran, with the event that lets the transaction commit."""
    done, release = threading.Event(), threading.Event()

    def in_transaction() -> object:
        with transaction.atomic():
            result = work()  # type: ignore[operator]
            done.set()
            release.wait(30)
        return result

    thread = _in_thread(in_transaction, into, name)
    assert done.wait(30), into
    return thread, release


def test_an_endpoint_removed_while_a_drain_records_deliveries_for_it_takes_every_one_with_it(
    receiver: Receiver,
) -> None:
    # Given an endpoint with three orders' order.created deliveries, and a drain that has
    # recorded their order.paid deliveries and not committed yet
    endpoint = register(receiver)
    orders = orders_won(3)
    results: dict[str, object] = {}
    drainer, release = _held_open(
        lambda: events_record(order_ids=[str(o.pk) for o in orders], event_type=WebhookEventType.ORDER_PAID),
        results,
        "recorded",
    )

    # When the endpoint is removed meanwhile
    remover = _in_thread(lambda: endpoint_remove(endpoint=endpoint), results, "dropped")
    remover.join(1.0)

    # Then the removal waits for the drain, and then takes all six deliveries with it
    assert remover.is_alive(), results
    release.set()
    drainer.join(30)
    remover.join(30)
    assert (results["recorded"], results["dropped"]) == (3, 6)
    assert not WebhookEndpoint.objects.exists()
    assert not WebhookDelivery.objects.exists()


def test_a_drain_that_comes_while_an_endpoint_is_removed_records_nothing_for_it(receiver: Receiver) -> None:
    # Given an endpoint being removed, its transaction not committed yet
    endpoint = register(receiver)
    orders = orders_won(2)
    results: dict[str, object] = {}
    remover, release = _held_open(lambda: endpoint_remove(endpoint=endpoint), results, "dropped")

    # When a drain records order.paid for its orders meanwhile
    drainer = _in_thread(
        lambda: events_record(order_ids=[str(o.pk) for o in orders], event_type=WebhookEventType.ORDER_PAID),
        results,
        "recorded",
    )
    drainer.join(1.0)

    # Then the drain waits for the removal, sees no endpoint, and records nothing
    assert drainer.is_alive(), results
    release.set()
    remover.join(30)
    drainer.join(30)
    assert (results["dropped"], results["recorded"]) == (2, 0)
    assert not WebhookDelivery.objects.exists()
    assert not WebhookEvent.objects.filter(type=WebhookEventType.ORDER_PAID).exists()
