"""``python -m tcpdoor.client``: the seed's client for the TCP front door (docs/tcp.md).

    python -m tcpdoor.client ping
    python -m tcpdoor.client status iphone15
    python -m tcpdoor.client attempt iphone15 --token <access token> [--solve]
    python -m tcpdoor.client attempt iphone15 --user-id user_123      # a --trust-user-id door
    python -m tcpdoor.client bench iphone15 -c 100 -n 10000 --users 1-1000 [--trusted] [--check]

``ping``, ``status`` and ``attempt`` need nothing but this file and ``tcpdoor.frames``.
``bench`` is the seed's benchmark: ``-n`` attempts over ``-c`` connections by shoppers drawn
at random from ``--users`` (``user_<n>``, created when missing, with a token each unless
``--trusted``), then average and p99 latency, attempts per second, answers per status, and
with ``--check`` the oversell check against Redis and PostgreSQL. It reads the stack's
settings (``DATABASE_URL``, ``REDIS_URL``, ``DJANGO_SETTINGS_MODULE``; ``make run`` writes the
first two to ``.run/stack.env``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import uvloop

from tcpdoor.frames import MessageType
from tcpdoor.load import DEFAULT_PORT, DoorClient, DoorClosed

# --- The command line --------------------------------------------------------------------


def _user_range(raw: str) -> range:
    low, _, high = raw.partition("-")
    try:
        first, last = int(low), int(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a range like 1-1000") from None
    if first < 1 or last < first:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a range like 1-1000")
    return range(first, last + 1)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tcpdoor.client", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("ping", help="is the door up")
    status = commands.add_parser("status", help="a sale's window, stock and status")
    status.add_argument("product", help="product slug or sale id")
    attempt = commands.add_parser("attempt", help="send one purchase attempt")
    attempt.add_argument("product", help="product slug or sale id")
    who = attempt.add_mutually_exclusive_group(required=True)
    who.add_argument("--token", help="your access token (POST /api/auth/token/)")
    who.add_argument("--user-id", help="a user id or username (a door run with --trust-user-id)")
    attempt.add_argument("--challenge", default="")
    attempt.add_argument("--solution", default="")
    attempt.add_argument("--solve", action="store_true", help="ask for a challenge and solve it first")
    attempt.add_argument("--idempotency-key", default="")
    bench = commands.add_parser("bench", help="the seed's benchmark, with the oversell check")
    bench.add_argument("product", help="product slug or sale id")
    bench.add_argument("-c", "--concurrency", type=int, default=50, help="connections (default 50)")
    bench.add_argument("-n", "--requests", type=int, default=10_000, help="attempts in all (default 10,000)")
    bench.add_argument("--users", type=_user_range, default=range(1, 1001), help="user_<n> for n in, e.g. 1-1000")
    bench.add_argument("--trusted", action="store_true", help="send user_id, not tokens (a --trust-user-id door)")
    bench.add_argument("--check", action="store_true", help="check oversell in Redis and PostgreSQL afterwards")
    bench.add_argument("--seed", type=int, default=7, help="random seed of the users drawn")
    return parser


async def _one(args: argparse.Namespace) -> dict[str, Any]:
    client = await DoorClient.connect(args.host, args.port)
    try:
        if args.command == "ping":
            return await client.ask(MessageType.PING, {})
        if args.command == "status":
            return await client.ask(MessageType.SALE_STATUS, {"product_id": args.product})
        who = {"user_id": args.user_id} if args.user_id else {"token": args.token}
        challenge, solution = args.challenge, args.solution
        if args.solve:
            issued = await client.ask(MessageType.CHALLENGE, {"product_id": args.product, **who})
            if issued.get("status") != "OK":
                return issued
            challenge, solution = issued["challenge"], _solve(issued["challenge"], int(issued["difficulty"]))
        body: dict[str, Any] = {"product_id": args.product, **who}
        for name, value in (
            ("challenge", challenge),
            ("solution", solution),
            ("idempotency_key", args.idempotency_key),
        ):
            if value:
                body[name] = value
        return await client.ask(MessageType.ATTEMPT_PURCHASE, body)
    finally:
        await client.close()


def _solve(challenge: str, difficulty: int) -> str:
    """The proof of work (docs/design.md, "Proof of work"): the first counter whose sha256 has
    enough leading zero bits."""
    limit = 1 << (256 - difficulty)
    prefix = hashlib.sha256(challenge.encode("utf-8"))
    counter = 0
    while True:
        attempt = prefix.copy()
        attempt.update(str(counter).encode("ascii"))
        if int.from_bytes(attempt.digest(), "big") < limit:
            return str(counter)
        counter += 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "bench":
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashsale_project.settings.local")
            import django

            django.setup()
            from tcpdoor.seedbench import seed_bench  # Its models import only once Django is set up.

            return seed_bench(args)
        loop_factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            answer = runner.run(_one(args))
    except (OSError, DoorClosed) as error:
        print(f"tcpdoor.client: {error}", file=sys.stderr)
        return 2
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
