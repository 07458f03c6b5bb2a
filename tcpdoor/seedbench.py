"""``python -m tcpdoor.client bench``: the seed's benchmark against a running door, with the
oversell check (Redis and PostgreSQL). Imported once Django is set up (``tcpdoor.client``)."""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count

from accounts.tokens import access_token_issue
from antibot.proof_of_work import solve
from orders.drain import sale_backlog
from orders.models import Order
from orders.reconciliation import sale_reconcile
from sales import inventory
from sales.models import FlashSale
from sales.purchase import sale_challenge_issue
from sales.selectors import sale_by_reference

from .load import attempt_frame, load_run

USERNAME = "user_{}"


def users_ensure(numbers: range) -> dict[int, int]:
    """``user_<n>`` for every n, created when missing (bulk): n -> user id."""
    users = get_user_model().objects
    names = {USERNAME.format(number): number for number in numbers}
    known = dict(users.filter(username__in=list(names)).values_list("username", "pk"))
    missing = [name for name in names if name not in known]
    for start in range(0, len(missing), 5000):
        users.bulk_create(
            [get_user_model()(username=name, password="!") for name in missing[start : start + 5000]],
            ignore_conflicts=True,
        )
    if missing:
        known = dict(users.filter(username__in=list(names)).values_list("username", "pk"))
    return {number: known[name] for name, number in names.items()}


@dataclass
class OversellCheck:
    """What the seed's client checks, against Redis and PostgreSQL."""

    sale_id: int
    total: int
    remaining: int
    buyers: int
    orders: int
    wins_answered: int
    users_with_two: int
    backlog_left: int
    problems: list[str] = field(default_factory=list)

    @property
    def holds(self) -> bool:
        return not self.problems


def oversell_check(*, sale_id: int, wins_answered: int, drain_timeout_s: float = 60.0) -> OversellCheck:
    """I1 now; then, once the worker drained the stream (bounded wait), one PostgreSQL order
    per buyer with the same id (reconciliation without repairing) and no user with two."""
    counts = inventory.sale_counts(sale_id)
    deadline = time.monotonic() + drain_timeout_s
    while sale_backlog(sale_id) > 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    report = sale_reconcile(sale_id=sale_id, full=True, repair=False, drain=False)
    doubled = (
        Order.objects.filter(sale_id=sale_id).values("user_id").annotate(units=Count("id")).filter(units__gt=1).count()
    )
    check = OversellCheck(
        sale_id=sale_id,
        total=counts.total,
        remaining=counts.remaining,
        buyers=counts.buyers,
        orders=report.orders,
        wins_answered=wins_answered,
        users_with_two=doubled,
        backlog_left=report.backlog,
    )
    if not counts.stock_consistent:
        check.problems.append(f"I1: remaining {counts.remaining} + buyers {counts.buyers} != total {counts.total}")
    if counts.buyers > counts.total or counts.remaining < 0:
        check.problems.append("oversold: more buyers than units")
    if wins_answered > counts.buyers:
        check.problems.append(f"{wins_answered} wins answered, {counts.buyers} buyers in Redis")
    if doubled:
        check.problems.append(f"{doubled} users hold two orders")
    if report.backlog:
        check.problems.append(f"{report.backlog} orders still waiting in the stream")
    elif report.i2_holds is False or report.orders != report.buyers:
        check.problems.append(f"I2: {report.orders} orders in PostgreSQL for {report.buyers} buyers")
    check.problems.extend(report.unexplained)
    return check


def seed_bench(args: argparse.Namespace) -> int:
    sale: FlashSale | None = sale_by_reference(str(args.product))
    if sale is None:
        print(f"tcpdoor.client: no sale {args.product!r} (a sale id or a product slug)")
        return 2
    users = users_ensure(args.users)
    rng = random.Random(args.seed)
    drawn = [rng.choice(args.users) for _ in range(args.requests)]
    tokens = {} if args.trusted else {number: access_token_issue(user_id=users[number]).token for number in set(drawn)}
    frames = []
    for number in drawn:
        proof: dict[str, str] = {}
        if sale.pow_difficulty > 0:
            issued = sale_challenge_issue(sale_id=sale.pk, user_id=users[number])
            proof = {"challenge": issued.challenge, "solution": solve(issued.challenge, issued.difficulty)}
        who: dict[str, Any] = {"user_id": USERNAME.format(number)} if args.trusted else {"token": tokens[number]}
        frames.append(attempt_frame(args.product, **who, **proof))
    result = load_run(frames, host=args.host, port=args.port, connections=args.concurrency)
    summary = result.summary()
    if args.check:
        check = oversell_check(sale_id=sale.pk, wins_answered=result.statuses.get("SUCCESS", 0))
        summary["check"] = asdict(check) | {"holds": check.holds}
    print(json.dumps(summary, indent=2))
    return 0 if "check" not in summary or summary["check"]["holds"] else 1
