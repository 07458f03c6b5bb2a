"""The fault suite's stack and its shoppers: ``make run``'s launcher (``python -m devstack``:
web with two granian workers, ws, a prefork Celery worker, beat, all under the supervisor)
on a Redis and a PostgreSQL of the suite's own, which a case may kill, stop and start.

Shoppers buy over HTTP from this process (``purchase_crowd``), each retrying what the
contract says to retry (429, 503, a refused connection) until it hears a final answer; every
answer is kept with its instant, so a case can tell what clients saw during its fault and
when the stack answered again. ``join_crowd`` does the same for a queue-mode sale's line,
each shopper joining until they hear their place. ``verdict`` checks I1-I4, one order and
one email per acknowledged win, against the servers themselves.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_string
from pathlib import Path
from typing import Any

import httpx
import psycopg
from redis import Redis

from devstack.localservers import LocalPostgres, LocalRedis, free_port
from sales import keys
from tests.devstack.console import Console, newcomer_env, stack_programs

ROOT = Path(__file__).resolve().parents[2]
# A line per request of the crowd would drown the suite's output.
logging.getLogger("httpx").setLevel(logging.WARNING)
RESULTS = ROOT / "artifacts" / "faults"


@dataclass
class Stack:
    redis: LocalRedis
    postgres: LocalPostgres
    console: Console
    run_dir: Path
    web_url: str
    ws_url: str
    env: dict[str, str]

    def pid(self, program: str) -> int:
        return stack_programs(self.console)[program].pid

    def manage(self, *args: str) -> Any:
        """``manage.py <args> --json`` against this stack; its JSON answer."""
        result = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args, "--json"],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        return json.loads(result.stdout)

    def sale(self, name: str, stock: int, *options: str) -> int:
        created = self.manage("flashsale", "init", name, str(stock), "--starts-in", "0", "--duration", "3600",
                              "--bucket-capacity", "100000", "--bucket-refill", "100000", *options)  # fmt: skip
        return int(created["sale_id"])

    def shoppers(self, count: int) -> list[tuple[int, str]]:
        created = self.manage("flashsale", "shoppers", str(count))["shoppers"]
        return [(int(one["id"]), one["token"]) for one in created]

    def redis_client(self) -> Redis:
        return Redis.from_url(self.redis.url, decode_responses=True, socket_timeout=5)

    def up_again(self, program: str, *, after: int, timeout: float = 180) -> float:
        """When the supervisor said ``program`` is up again (seconds, monotonic clock)."""
        self.console.wait_for(rf"\[make run\] {program} is up again", timeout=timeout, after=after)
        return time.monotonic()

    def kill(self, program: str) -> dict[str, Any]:
        """SIGKILL ``program`` and wait for the supervisor to bring it back; when, and how long."""
        pid = self.pid(program)
        said = len(self.console.lines)
        at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        up = self.up_again(program, after=said)
        return {"at": at, "restarted_by_supervisor_after_s": round(up - at, 2), "killed_pid": pid}


@dataclass
class Answer:
    at: float
    status: int  # 0: no HTTP answer (refused, reset, timed out)
    code: str = ""


@dataclass
class Heard:
    """What a crowd was answered, whatever it asked."""

    answers: list[Answer] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)  # answers outside the contract

    def statuses(self, since: float = 0.0, until: float = float("inf")) -> Counter[str]:
        return Counter(
            f"{answer.status} {answer.code}".strip() for answer in self.answers if since <= answer.at < until
        )


@dataclass
class CrowdResult(Heard):
    wins: dict[int, str] = field(default_factory=dict)  # user -> order id, answered 201
    held: dict[int, str] = field(default_factory=dict)  # user -> order id, answered ALREADY_PURCHASED


async def _post(http: httpx.AsyncClient, path: str, headers: dict[str, str],
                heard: Heard) -> tuple[httpx.Response, dict[str, Any], str] | None:  # fmt: skip
    """One POST, its answer recorded; None after a connection that gave no answer (recorded
    as status 0, and a short pause before the next try)."""
    try:
        response = await http.post(path, headers=headers)
    except httpx.HTTPError:
        heard.answers.append(Answer(time.monotonic(), 0))
        await asyncio.sleep(0.2)
        return None
    try:
        body = response.json()
    except ValueError:
        body = {}
    code = str(body.get("status", ""))
    heard.answers.append(Answer(time.monotonic(), response.status_code, code))
    return response, body, code


async def _waited(response: httpx.Response, heard: Heard) -> bool:
    """A 429 or 503 is waited out (its Retry-After, at most 0.5 s, jittered) and tried again;
    anything else not expected is outside the contract. True: try again."""
    if response.status_code in (429, 503):
        if "Retry-After" not in response.headers:
            heard.bad.append(f"{response.status_code} without Retry-After")
        await asyncio.sleep(min(float(response.headers.get("Retry-After", "1")), 0.5) * random.uniform(0.5, 1))
        return True
    heard.bad.append(f"{response.status_code} {response.text[:200]}")
    return False


async def _shopper(
    http: httpx.AsyncClient, sale_id: int, user_id: int, token: str, *, start_at: float, deadline: float,
    result: CrowdResult,
) -> None:  # fmt: skip
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    headers = {"Authorization": f"Token {token}"}
    while time.monotonic() < deadline:
        answered = await _post(http, f"/api/sales/{sale_id}/purchase/", headers, result)
        if answered is None:
            continue
        response, body, code = answered
        if response.status_code == 201:
            result.wins[user_id] = body["order_id"]
            return
        if code == "ALREADY_PURCHASED":
            result.held[user_id] = body["order_id"]
            return
        if code == "SOLD_OUT" or not await _waited(response, result):
            return


async def _crowd(base: str, sale_id: int, shoppers: list[tuple[int, str]], *, spread: float, deadline: float,
                 result: CrowdResult) -> None:  # fmt: skip
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=base, timeout=10, limits=limits) as http:
        began = time.monotonic()
        await asyncio.gather(
            *(
                _shopper(
                    http,
                    sale_id,
                    user_id,
                    token,
                    start_at=began + random.uniform(0, spread),
                    deadline=deadline,
                    result=result,
                )
                for user_id, token in shoppers
            )
        )


def purchase_crowd(base: str, sale_id: int, shoppers: list[tuple[int, str]], *, spread: float,
                   deadline_s: float) -> CrowdResult:  # fmt: skip
    """Each shopper tries once at a random instant within ``spread`` seconds, then retries
    429, 503 and refused connections until a final answer or ``deadline_s``."""
    result = CrowdResult()
    asyncio.run(_crowd(base, sale_id, shoppers, spread=spread, deadline=time.monotonic() + deadline_s, result=result))
    return result


@dataclass
class JoinResult(Heard):
    places: dict[int, int] = field(default_factory=dict)  # user -> the number a 201 or 200 answered
    passes: dict[int, str] = field(default_factory=dict)
    heard_again: int = 0  # places answered 200: the shopper's join had run, its answer was lost


async def _joiner(
    http: httpx.AsyncClient, sale_id: int, user_id: int, token: str, *, start_at: float, deadline: float,
    result: JoinResult,
) -> None:  # fmt: skip
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    headers = {"Authorization": f"Token {token}"}
    while time.monotonic() < deadline:
        answered = await _post(http, f"/api/sales/{sale_id}/queue/", headers, result)
        if answered is None:
            continue
        response, body, _ = answered
        if response.status_code in (200, 201) and isinstance(body.get("number"), int):
            if user_id in result.places and result.places[user_id] != body["number"]:
                result.bad.append(f"shopper {user_id} heard {result.places[user_id]}, then {body['number']}")
            result.places[user_id] = body["number"]
            result.passes[user_id] = body["pass"]
            result.heard_again += response.status_code == 200
            return
        if not await _waited(response, result):
            return


def join_crowd(base: str, sale_id: int, shoppers: list[tuple[int, str]], *, spread: float, deadline_s: float,
               result: JoinResult) -> None:  # fmt: skip
    """Each shopper joins the sale's line once at a random instant within ``spread`` seconds,
    retrying 429, 503 and refused connections until the line answers their place (or
    ``deadline_s``); ``result`` fills in as they are answered, for a case to watch."""

    async def crowd() -> None:
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        deadline = time.monotonic() + deadline_s
        async with httpx.AsyncClient(base_url=base, timeout=10, limits=limits) as http:
            began = time.monotonic()
            await asyncio.gather(
                *(
                    _joiner(
                        http,
                        sale_id,
                        user,
                        token,
                        start_at=began + random.uniform(0, spread),
                        deadline=deadline,
                        result=result,
                    )
                    for user, token in shoppers
                )
            )

    asyncio.run(crowd())


def first_answer_after(result: CrowdResult | JoinResult, moment: float) -> float | None:
    """When the stack first answered a purchase again (any HTTP answer but 503) after the last
    failure that followed ``moment``."""
    after = sorted((answer for answer in result.answers if answer.at >= moment), key=lambda answer: answer.at)
    failing = [answer.at for answer in after if answer.status in (0, 503)]
    if not failing:
        return moment
    last_failure = failing[-1]
    recovered = [answer.at for answer in after if answer.at > last_failure and answer.status not in (0, 503)]
    return recovered[0] if recovered else None


@dataclass
class Verdict:
    total: int
    remaining: int
    buyers: dict[int, str]
    orders: dict[int, str]
    acknowledged: dict[int, str]
    lost: list[int]
    emails: Counter[str]
    problems: list[str]
    drained_in_s: float
    complete_at: float  # when every buyer had an order and an email (monotonic clock)


def _orders(database_url: str, sale_id: int) -> list[tuple[int, str]]:
    with psycopg.connect(database_url, connect_timeout=5) as connection:
        rows = connection.execute("SELECT user_id, id FROM orders_order WHERE sale_id = %s", [sale_id]).fetchall()
    return [(int(user_id), str(order_id)) for user_id, order_id in rows]


def _emails(mail_dir: Path, order_ids: set[str]) -> Counter[str]:
    """Distinct confirmation messages per order. A worker killed between sending a mail and
    marking it sent sends it again: the same message (its Message-ID is the order's), which
    counts once, as a mail client shows it once; two different messages count twice."""
    seen: dict[str, set[str]] = {}
    for message in mail_dir.iterdir():
        text = message.read_text(errors="replace")
        message_id = (message_from_string(text)["Message-ID"] or text).strip()
        for order_id in order_ids:
            if order_id in text:
                seen.setdefault(order_id, set()).add(message_id)
    return Counter({order_id: len(ids) for order_id, ids in seen.items()})


def verdict(stack: Stack, sale_id: int, crowd: CrowdResult, *, drain_timeout: float = 240) -> Verdict:
    """Wait (bounded) for every buyer's order and email, then judge I1-I4 and the wins."""
    mail = stack.run_dir / "mail"
    return judge(stack.redis.url, stack.postgres.url, mail, sale_id, crowd, drain_timeout=drain_timeout)


def judge(
    redis_url: str, database_url: str, mail_dir: Path, sale_id: int, crowd: CrowdResult, *, drain_timeout: float = 240
) -> Verdict:
    """``verdict`` against the Redis, the PostgreSQL and the mail directory (a file a message)
    named: a stack other than this suite's (the multi-host test's)."""
    client: Any = Redis.from_url(redis_url, decode_responses=True, socket_timeout=5)  # every reply is text
    try:
        meta = client.hgetall(keys.meta_key(sale_id))
        total, starts_ms, ends_ms = int(meta["total"]), int(meta["starts_at_ms"]), int(meta["ends_at_ms"])
        started = time.monotonic()
        while True:
            buyers = {int(user): order for user, order in client.hgetall(keys.buyers_key(sale_id)).items()}
            rows = _orders(database_url, sale_id)
            emails = _emails(mail_dir, set(buyers.values()))
            if (len(rows) == len(buyers) and all(emails[order] >= 1 for order in buyers.values())) or (
                time.monotonic() - started > drain_timeout
            ):
                break
            time.sleep(0.5)
        complete_at = time.monotonic()
        drained_in = complete_at - started
        remaining = int(client.get(keys.stock_key(sale_id)) or 0)
        stream = client.xrange(keys.orders_stream_key(sale_id))
    finally:
        client.close()
    orders = dict(rows)
    problems = []
    if remaining + len(buyers) != total:
        problems.append(f"I1: remaining {remaining} + buyers {len(buyers)} != total {total}")
    if orders != buyers:
        differ = len(set(orders.items()) ^ set(buyers.items()))
        problems.append(f"I2: {len(orders)} orders for {len(buyers)} buyers, {differ} differ")
    per_user = Counter(user for user, _ in rows)
    stream_users = Counter(fields["user_id"] for _, fields in stream)
    if any(count > 1 for count in per_user.values()) or any(count > 1 for count in stream_users.values()):
        problems.append("I3: a user holds more than one unit")
    if any(not starts_ms <= int(fields["ts"]) < ends_ms for _, fields in stream):
        problems.append("I4: a unit sold outside the window")
    acknowledged = {**crowd.held, **crowd.wins}
    lost = sorted(
        user for user, order in acknowledged.items() if buyers.get(user) != order or orders.get(user) != order
    )
    if lost:
        problems.append(f"{len(lost)} acknowledged win(s) lost")
    if any(count != 1 for count in emails.values()) or len(emails) != len(buyers):
        problems.append(f"emails: {len(emails)} orders emailed for {len(buyers)} buyers, counts {set(emails.values())}")
    if crowd.bad:
        problems.append(f"answers outside the contract: {Counter(crowd.bad).most_common(5)}")
    return Verdict(
        total, remaining, buyers, orders, acknowledged, lost, emails, problems, round(drained_in, 1), complete_at
    )


def record(case: str, **figures: Any) -> dict[str, Any]:
    """Keep a case's measurements (artifacts/faults/<case>.json) for docs/reliability.md."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    figures = {"case": case, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **figures}
    (RESULTS / f"{case}.json").write_text(json.dumps(figures, indent=2, default=str))
    print(f"\n[fault] {json.dumps(figures, default=str)}")
    return figures


def launch(scratch: Path, *, web_port: int, ws_port: int) -> Stack:
    """Redis (appendfsync always) and PostgreSQL of the suite's own, then ``make run``'s launcher
    on them; returns once it printed "ready."."""
    redis_server = LocalRedis(data_dir=scratch / "redis", port=free_port(), appendfsync="always").start()
    postgres = LocalPostgres(data_dir=scratch / "postgres", port=free_port()).start()
    run_dir = scratch / "run"
    env = newcomer_env(
        run_dir,
        REDIS_URL=redis_server.url,
        DATABASE_URL=postgres.url,
        # One address (this process) is the whole crowd: the per-address limits would turn
        # most of it away, which is not what these cases are about.
        ANTIBOT_IP_LIMIT="0",
        ANTIBOT_USER_LIMIT="0",
        WS_MAX_CONNECTIONS_PER_IP="0",
        WEB_MAX_CONNECTIONS_PER_IP="0",
        LOGIN_THROTTLE_IP="off",
        REGISTER_THROTTLE_IP="off",
    )
    console = Console(
        [sys.executable, "-m", "devstack", "--web-port", str(web_port), "--ws-port", str(ws_port),
         "--web-workers", "2", "--sale-starts-in", "0"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    try:
        console.wait_for(r"\[make run\] ready\.", timeout=600)
    except AssertionError:
        console.interrupt()
        postgres.stop()
        redis_server.stop()
        raise
    manage_env = {**env, "DJANGO_SETTINGS_MODULE": "flashsale_project.settings.local"}
    return Stack(redis_server, postgres, console, run_dir, f"http://127.0.0.1:{web_port}",
                 f"ws://127.0.0.1:{ws_port}", manage_env)  # fmt: skip
