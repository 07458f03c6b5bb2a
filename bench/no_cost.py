# ruff: noqa: PLC0415 - the settings exist only once the servers started
"""What a "no" costs the web process's Python, without the network (issue 27, point 2;
docs/purchase-path.md, "What a 'no' costs"): the composed WSGI application
(``flashsale_project.wsgi``: EdgeHeaders, RequestBodies, HotPathRouter) called in a loop on one
thread, against the benchmark's own Redis and PostgreSQL, for the control (the bare Django view)
and each of the crowd's answers: sold out, rate limited (the bucket; the per-user window, with
proofs of this sale and, as scenario 4b, of another; the per-address window; crowd admission),
not started, and a place read; and, asked for by name, a join of the waiting room (``--only
control,join``: a 201, each line once, so ``--n 5000``) and a win with the transparency log on
and off (``--only win_log_on,win_log_off --n 3000``: a new shopper each, issue 23's cost of
the log in the web process alone). Prints microseconds per request; ``--profile`` adds a
cProfile of each.

    python -m bench.no_cost [--n 20000] [--profile] [--only sold_out,place_read]

The server's own cost per request (granian, HTTP, the thread hand-off) is the same for every
path and is not in these numbers; ``make bench`` measures the whole.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from typing import Any

import redis

from .stack import BenchStack

Case = tuple[str, str, list[tuple[str, str]]]
"""A case: method, path, and the (token, body) lines its requests cycle through."""
SHIPPED_IP_LIMIT = 200
"""``ANTIBOT_IP_LIMIT``'s default (flashsale_project/settings/base.py), for the ip case."""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--only", default="control,sold_out,rate_limited,user,user_other,ip,crowd,not_started,place_read"
    )
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    only = args.only.split(",")
    stack = BenchStack()
    try:
        os.environ.update(stack.start_servers())
        os.environ["ANTIBOT_POW_BASE_RATE"] = str(10**9)
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", "--noinput", verbosity=0)
        os.environ["ANTIBOT_USER_LIMIT"] = "10"
        from django.conf import settings

        from flashsale_project.wsgi import application
        from sales.models import Admission
        from sales.waiting_room import queue_join
        from sales.warming import sale_warm

        from . import data

        pool = data.ShopperPool()
        cases: dict[str, Case] = {}
        cases["control"] = ("POST", "/bench/control/", [("", "")])

        def purchase(sale: Any, shoppers: list[Any], *, proofs_of: Any = None, processes: int = 2) -> Case:
            """A purchase case: each shopper's solved challenge, of ``proofs_of`` (another sale)
            or of the sale itself."""
            bodies = data.presolved_bodies(sale=proofs_of or sale, shoppers=shoppers, processes=processes)
            lines = [(s.token, b) for s, b in zip(shoppers, bodies, strict=True)]
            return ("POST", f"/api/sales/{sale.pk}/purchase/", lines)

        if "sold_out" in only:
            sale = data.sale_open(stock=1, pow_difficulty=8)
            shoppers = pool.ensure(3001)
            data.sale_sell_out(sale, shoppers[:1])
            cases["sold_out"] = purchase(sale, shoppers[1:])
        if "rate_limited" in only:
            sale = data.sale_open(stock=10**9, pow_difficulty=8, bucket_capacity=1, bucket_refill_per_second=1)
            cases["rate_limited"] = purchase(sale, pool.ensure(3000))
        if "user" in only:
            sale = data.sale_open(stock=10**9, pow_difficulty=8, bucket_capacity=1, bucket_refill_per_second=1)
            cases["user"] = purchase(sale, pool.ensure(200)[:5], processes=1)
        if "ip" in only or "user_other" in only:  # proofs of another sale: 403 inside the windows
            elsewhere = data.sale_open(stock=10**9, pow_difficulty=8)
        if "user_other" in only:  # scenario 4b's: five shoppers, each over the per-user window
            sale = data.sale_open(stock=10**9, pow_difficulty=8)
            cases["user_other"] = purchase(sale, pool.ensure(200)[:5], proofs_of=elsewhere, processes=1)
        if "ip" in only:  # scenario 4c's: the crowd from one address, over the per-address window
            sale = data.sale_open(stock=10**9, pow_difficulty=8)
            cases["ip"] = purchase(sale, pool.ensure(3000), proofs_of=elsewhere)
        if "crowd" in only:  # scenario 4d's: at most ceil(0.1 x R) attempts a second go on, the rest 429
            sale = data.sale_open(stock=200, pow_difficulty=8, crowd_factor=0.1)
            cases["crowd"] = purchase(sale, pool.ensure(3000))
        if "not_started" in only:
            sale = data.sale_open(stock=1000, pow_difficulty=8, starts_in_s=3600)
            cases["not_started"] = purchase(sale, pool.ensure(3000))
        if "place_read" in only:
            sale = data.sale_open(stock=1000, pow_difficulty=0)
            sale.admission = Admission.QUEUE
            sale.save(update_fields=["admission"])
            sale_warm(sale=sale)
            shoppers = pool.ensure(200)
            passes = [queue_join(sale_id=sale.pk, user_id=s.user_id).queue_pass for s in shoppers]
            cases["place_read"] = (
                "GET",
                f"/api/sales/{sale.pk}/queue/",
                [(s.token, p) for s, p in zip(shoppers, passes, strict=True)],
            )
        if "join" in only:  # a join that gives a number (201), proof of work at 8 bits: not a "no"
            sale = data.sale_open(stock=1000, pow_difficulty=8)
            sale.admission = Admission.QUEUE
            sale.save(update_fields=["admission"])
            sale_warm(sale=sale)
            shoppers = pool.ensure(5 * args.n + 2000)
            bodies = data.presolved_bodies(sale=sale, shoppers=shoppers)
            cases["join"] = (
                "POST",
                f"/api/sales/{sale.pk}/queue/",
                [(s.token, b) for s, b in zip(shoppers, bodies, strict=True)],
            )

        # A win: a new shopper each, on a sale with stock for all, without proof of work; the
        # log's setting is read per request, so one process measures both sides.
        log_enabled = {"win_log_on": True, "win_log_off": False}
        for name in log_enabled:
            if name in only:
                sale = data.sale_open(stock=10**7, pow_difficulty=0)
                shoppers = pool.ensure(5 * args.n + 2000)  # the two sides' sales differ: a win each
                cases[name] = ("POST", f"/api/sales/{sale.pk}/purchase/", [(s.token, "") for s in shoppers])

        def environ_for(method: str, path: str, token: str, body: str) -> dict:
            raw = body.encode() if method == "POST" else b""
            env = {
                "REQUEST_METHOD": method,
                "PATH_INFO": path,
                "SCRIPT_NAME": "",
                "QUERY_STRING": "",
                "SERVER_NAME": "127.0.0.1",
                "SERVER_PORT": "8000",
                "SERVER_PROTOCOL": "HTTP/1.1",
                "REMOTE_ADDR": "127.0.0.1",
                "HTTP_HOST": "127.0.0.1:8000",
                "CONTENT_TYPE": "application/json",
                "CONTENT_LENGTH": str(len(raw)),
                "wsgi.input": io.BytesIO(raw),
                "wsgi.url_scheme": "http",
                "wsgi.version": (1, 0),
                "wsgi.errors": sys.stderr,
                "wsgi.multithread": True,
                "wsgi.multiprocess": True,
                "wsgi.run_once": False,
            }
            if token:
                env["HTTP_AUTHORIZATION"] = f"Token {token}"
            if method == "GET" and body:
                env["HTTP_QUEUE_PASS"] = body
            return env

        seen: dict[str, dict[str, int]] = {}
        cpu: dict[str, float] = {}
        thread: dict[str, float] = {}
        redis_us: dict[str, float] = {}
        redis_client = redis.Redis.from_url(os.environ["REDIS_URL"])
        # Each loop goes on where the last one stopped: a join's line is good once.
        offsets: dict[str, int] = {}

        def loop(name: str, n: int) -> float:
            method, path, lines = cases[name]
            first = offsets.get(name, 0)
            offsets[name] = first + n
            envs = [environ_for(method, path, *lines[(first + i) % len(lines)]) for i in range(n)]
            statuses = seen.setdefault(name, {})

            def start(status, headers, exc_info=None):
                statuses[status] = statuses.get(status, 0) + 1

            if name in log_enabled:
                settings.FLASHSALE_LOG_ENABLED = log_enabled[name]
            # The bench lifts the per-address window (every request is 127.0.0.1's); the ip case
            # has the shipped one, read when its sale's plan is made (in its first loop).
            settings.ANTIBOT_IP_LIMIT = SHIPPED_IP_LIMIT if name == "ip" else 0
            scripts_before = _script_usec(redis_client)
            began, cpu_began, thread_began = time.perf_counter(), time.process_time(), time.thread_time()
            for env in envs:
                result = application(env, start)
                b"".join(result)
                close = getattr(result, "close", None)
                if close:
                    close()
            spent = (time.perf_counter() - began) / n * 1e6
            cpu[name] = (time.process_time() - cpu_began) / n * 1e6
            thread[name] = (time.thread_time() - thread_began) / n * 1e6
            redis_us[name] = (_script_usec(redis_client) - scripts_before) / n
            settings.ANTIBOT_IP_LIMIT = 0
            return spent

        order = ["control", *(name for name in dict.fromkeys(only) if name in cases)]  # as --only names them
        for name in order:
            loop(name, 2000)  # warm
        # The rounds go through every case in turn (a drift of the machine weighs on each
        # alike); each case's best round is printed.
        best: dict[str, tuple[float, float, float, float]] = {}
        for _ in range(3):
            for name in order:
                measured = (loop(name, args.n), cpu[name], thread[name], redis_us[name])
                best[name] = min(best[name], measured) if name in best else measured
        for name in order:
            wall, process_cpu, thread_cpu, scripts = best[name]
            print(
                f"{name:<13} {wall:7.1f} us/request (CPU {process_cpu:6.1f} us in the process, {thread_cpu:6.1f} in"
                f" its thread; {scripts:5.1f} us in Redis's scripts)  {seen[name]}",
                flush=True,
            )
        if args.profile:
            for name in cases:
                profiler = cProfile.Profile()
                profiler.enable()
                loop(name, args.n)
                profiler.disable()
                out = io.StringIO()
                stats = pstats.Stats(profiler, stream=out)
                stats.sort_stats("tottime").print_stats(args.top)
                print(f"===== {name}: tottime", flush=True)
                print("\n".join(out.getvalue().splitlines()[6:]), flush=True)
                out = io.StringIO()
                stats = pstats.Stats(profiler, stream=out)
                stats.sort_stats("cumtime").print_stats(args.top + 15)
                print(f"===== {name}: cumtime", flush=True)
                print("\n".join(out.getvalue().splitlines()[6:]), flush=True)
        return 0
    finally:
        stack.stop()


def _script_usec(client: redis.Redis) -> int:
    """Microseconds Redis has spent in scripts (EVALSHA, EVAL, FCALL) since it started."""
    stats = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("usec", 0)) for name in ("evalsha", "eval", "fcall"))


if __name__ == "__main__":
    sys.exit(main())
