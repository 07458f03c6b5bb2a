"""The benchmark's data, made through the application's own services before a timed window:
shoppers with warm API tokens, sales loaded into Redis, and proof-of-work challenges issued
by the server's code and solved ahead, written as request files for the load generator.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import multiprocessing
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone

from accounts.tokens import access_token_issue
from antibot.challenges import Challenge
from antibot.proof_of_work import solve
from core.pipelining import AutoPipeline
from core.redis_store import inventory_redis_async
from core.steps import drive_async
from orders.tasks import drain_sale_orders
from sales import inventory
from sales.models import FlashSale
from sales.purchase import sale_challenge_issue, sale_challenge_steps
from sales.services import product_create, sale_create
from sales.warming import sale_warm

_sequence = itertools.count(1)
# Far more than a run can spend: the bucket is not what the winning path measures.
UNLIMITED_BUCKET = 2_000_000_000
ISSUED_TOGETHER = 2000
"""Challenges ``challenges_issue`` has in flight at once (its pipeline sends them in batches)."""


@dataclass(frozen=True, slots=True)
class Shopper:
    user_id: int
    token: str


class ShopperPool:
    """Shoppers made in bulk as a run needs them; the same shoppers serve every sale."""

    def __init__(self) -> None:
        self.shoppers: list[Shopper] = []

    def ensure(self, count: int) -> list[Shopper]:
        missing = count - len(self.shoppers)
        if missing > 0:
            self.shoppers.extend(shoppers_create(missing))
        return self.shoppers[:count]


def shoppers_create(count: int, *, batch_size: int = 5000) -> list[Shopper]:
    """Users with access tokens, bulk-inserted (a token is signed in process: nothing to
    store, the purchase path verifies it without SQL or Redis)."""
    users_model = get_user_model()
    made: list[Shopper] = []
    run = uuid.uuid4().hex[:8]
    for start in range(0, count, batch_size):
        size = min(batch_size, count - start)
        users = users_model.objects.bulk_create(
            [users_model(username=f"bench-{run}-{start + n}", password="!") for n in range(size)]
        )
        made.extend(Shopper(user_id=user.pk, token=access_token_issue(user_id=user.pk).token) for user in users)
    return made


def sale_open(
    *,
    stock: int,
    pow_difficulty: int,
    bucket_capacity: int = UNLIMITED_BUCKET,
    bucket_refill_per_second: int = UNLIMITED_BUCKET,
    starts_in_s: float = -1.0,
    **fields: Any,
) -> FlashSale:
    """A sale opening ``starts_in_s`` from now (open already by default) for two hours,
    loaded into Redis; ``fields`` are more of ``sale_create``'s (a queue-mode sale's
    ``admission`` and ``serving_rate``)."""
    number = next(_sequence)
    product = product_create(
        slug=f"bench-{uuid.uuid4().hex[:10]}-{number}", name=f"Bench phone {number}", list_price=Decimal("799.00")
    )
    starts_at = timezone.now() + timedelta(seconds=starts_in_s)
    sale = sale_create(
        product=product,
        price=Decimal("1.00"),
        total_stock=stock,
        starts_at=starts_at,
        ends_at=starts_at + timedelta(hours=2),
        pow_difficulty=pow_difficulty,
        bucket_capacity=bucket_capacity,
        bucket_refill_per_second=bucket_refill_per_second,
        **fields,
    )
    sale_warm(sale=sale)
    return sale


def sale_sell_out(sale: FlashSale, shoppers: Sequence[Shopper]) -> None:
    """Buy every unit through the purchase script, as winners would, and kick the drain of
    their orders as the purchase API does."""
    for shopper in shoppers[: sale.total_stock]:
        answer = inventory.purchase_run(sale_id=sale.pk, user_id=shopper.user_id, order_id=str(uuid.uuid4()))
        if answer.status != "SUCCESS":
            raise RuntimeError(f"selling out sale {sale.pk}: {answer.status}")
    drain_sale_orders.delay(sale.pk)


def _solve(job: tuple[str, int]) -> str:
    return solve(*job)


def challenges_issue(*, sale_id: int, user_ids: Sequence[int]) -> list[Challenge]:
    """A challenge for each of ``user_ids`` (in order) from the server's own steps
    (``sale_challenge_steps``), run together on one asyncio client that pipelines them, as the
    TCP door does. One at a time, each waits for Redis to write the sale's challenge count to
    its append-only file (``appendfsync always``): 2.0 ms a challenge here, against 0.10 ms
    together (3,000 challenges, 2026-12-04). The first is issued alone, so the sale is known in
    this process before the rest ask."""
    if not user_ids:
        return []
    first = sale_challenge_issue(sale_id=sale_id, user_id=user_ids[0])

    async def the_rest() -> list[Challenge]:
        client = AutoPipeline(inventory_redis_async())
        issued: list[Challenge] = []
        try:
            for start in range(1, len(user_ids), ISSUED_TOGETHER):
                batch = user_ids[start : start + ISSUED_TOGETHER]
                issued += await asyncio.gather(
                    *(drive_async(sale_challenge_steps(sale_id=sale_id, user_id=user_id), client) for user_id in batch)
                )
        finally:
            await client.aclose()
        return issued

    return [first, *asyncio.run(the_rest())]


def presolved_bodies(*, sale: FlashSale, shoppers: Sequence[Shopper], processes: int = 2) -> list[str]:
    """One purchase body per shopper (in order): a challenge the server's code issued for this
    user and sale, and its solution. Without proof of work the body is empty."""
    if sale.pow_difficulty == 0:
        return ["" for _ in shoppers]
    if processes <= 1:  # Where forking is unsafe (Locust runs on gevent), and an event loop of ours too.
        challenges = [sale_challenge_issue(sale_id=sale.pk, user_id=shopper.user_id) for shopper in shoppers]
    else:
        challenges = challenges_issue(sale_id=sale.pk, user_ids=[shopper.user_id for shopper in shoppers])
    jobs = [(issued.challenge, issued.difficulty) for issued in challenges]
    if processes <= 1:
        solutions = [_solve(job) for job in jobs]
    else:
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            solutions = pool.map(_solve, jobs, chunksize=512)
    return [
        json.dumps({"challenge": issued.challenge, "solution": solution}, separators=(",", ":"))
        for issued, solution in zip(challenges, solutions, strict=True)
    ]


def request_file_write(path: Path, shoppers: Sequence[Shopper], bodies: Sequence[str] | None = None) -> Path:
    """The load generator's request file: ``<token>\\t<body>`` per line."""
    with path.open("w", encoding="utf-8") as out:
        for index, shopper in enumerate(shoppers):
            body = bodies[index] if bodies is not None else ""
            out.write(f"{shopper.token}\t{body}\n")
    return path


def stampede_file_write(
    path: Path, *, sale: FlashSale, shoppers: Sequence[Shopper], per_user: int, seed: int = 7
) -> Path:
    """``per_user`` requests from each shopper, each with its own solved challenge, shuffled
    so a user's attempts are spread over the stampede as a crowd's would be."""
    repeated = [shopper for shopper in shoppers for _ in range(per_user)]
    bodies = presolved_bodies(sale=sale, shoppers=repeated)
    pairs = list(zip(repeated, bodies, strict=True))
    random.Random(seed).shuffle(pairs)
    return request_file_write(path, [shopper for shopper, _ in pairs], [body for _, body in pairs])
