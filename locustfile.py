"""Locust scenarios for teams who use Locust: the benchmark's scenarios 2 and 3 (``make bench``
is the reference; see README, "Benchmark").

Against the stack ``make run`` started on this machine (Locust is not a project dependency)::

    ANTIBOT_IP_LIMIT=0 make run                  # every request comes from 127.0.0.1
    .venv/bin/pip install locust
    .venv/bin/locust -f locustfile.py --host http://127.0.0.1:8000 --headless -u 200 -r 50 -t 30s

Before the load starts, this process prepares what the benchmark prepares, through the
application's own code and the servers ``make run`` wrote to ``.run/stack.env``: shoppers with
warm API tokens, a sale with a large stock (winning path), a sold-out sale, and one challenge
per shopper issued by the server's code and solved ahead (``LOCUST_SHOPPERS``, default 20,000;
``LOCUST_POW_DIFFICULTY``, default 8). ``WinningPathShopper`` sends each prepared request once
(a reused challenge would be refused) and stops when none is left; ``SoldOutShopper`` cycles
over the sold-out sale, which its local marker answers.

Locust's client is Python on gevent: on this 2-core machine 40 users made about 550 requests
a second in all, with no failure, the client being the limit. ``make bench`` (wrk) is the
reference for the server's numbers.
"""

from __future__ import annotations

import itertools
import os
import threading
from typing import Any

from locust import HttpUser, between, events, task
from locust.exception import StopUser

_prepared: dict[str, Any] = {}
_lock = threading.Lock()


@events.test_start.add_listener
def _prepare(environment: Any, **_: Any) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashsale_project.settings.local")
    os.environ.setdefault("ANTIBOT_POW_BASE_RATE", str(10**9))  # issue at the sale's floor difficulty
    os.environ.setdefault("ANTIBOT_USER_LIMIT", "0")
    import django

    django.setup()
    from bench import data
    from bench.scenarios import HUGE_STOCK

    count = int(os.environ.get("LOCUST_SHOPPERS", "20000"))
    difficulty = int(os.environ.get("LOCUST_POW_DIFFICULTY", "8"))
    shoppers = data.shoppers_create(count)
    winning = data.sale_open(stock=HUGE_STOCK, pow_difficulty=difficulty)
    sold_out = data.sale_open(stock=1, pow_difficulty=difficulty)
    data.sale_sell_out(sold_out, shoppers[:1])
    cycled = shoppers[1 : min(len(shoppers), 2001)]
    # One process: forking a solver pool under gevent's hub hangs.
    winning_bodies = data.presolved_bodies(sale=winning, shoppers=shoppers, processes=1)
    sold_out_bodies = data.presolved_bodies(sale=sold_out, shoppers=cycled, processes=1)
    _prepared.update(
        winning_sale=winning.pk,
        winning=iter(list(zip(shoppers, winning_bodies, strict=True))),
        sold_out_sale=sold_out.pk,
        sold_out=itertools.cycle(list(zip(cycled, sold_out_bodies, strict=True))),
    )


def _next(name: str) -> tuple[Any, str] | None:
    with _lock:
        return next(_prepared[name], None)  # type: ignore[no-any-return]


class WinningPathShopper(HttpUser):
    """Scenario 2: distinct shoppers, proof of work solved ahead; every attempt wins (201)."""

    wait_time = between(0, 0)

    @task
    def purchase(self) -> None:
        prepared = _next("winning")
        if prepared is None:
            raise StopUser()
        shopper, body = prepared
        with self.client.post(
            f"/api/sales/{_prepared['winning_sale']}/purchase/",
            data=body,
            headers={"Authorization": f"Token {shopper.token}", "Content-Type": "application/json"},
            name="purchase (winning path)",
            catch_response=True,
        ) as response:
            if response.status_code != 201:
                response.failure(f"{response.status_code}: {response.text[:200]}")


class SoldOutShopper(HttpUser):
    """Scenario 3: the stampede after the stock is gone; every answer is 409 SOLD_OUT."""

    wait_time = between(0, 0)

    @task
    def purchase(self) -> None:
        shopper, body = _next("sold_out")  # type: ignore[misc]
        with self.client.post(
            f"/api/sales/{_prepared['sold_out_sale']}/purchase/",
            data=body,
            headers={"Authorization": f"Token {shopper.token}", "Content-Type": "application/json"},
            name="purchase (sold out)",
            catch_response=True,
        ) as response:
            if response.status_code == 409 and response.json().get("status") == "SOLD_OUT":
                response.success()
            else:
                response.failure(f"{response.status_code}: {response.text[:200]}")
