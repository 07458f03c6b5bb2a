"""A rehearsal's synthetic crowd: shoppers made for it press Buy on its shadow sale at the
start, as a real crowd's clients do, over HTTP (the REST API) or the TCP door, and what each
heard is counted.

No Django here: the crowd talks to a stack by its URL only, so it drives ``make run`` and a
deployed shop alike. Proofs of work are solved in a process pool before the start (and again
when a challenge expired or was spent), so the crowd fires together. Every shopper stops at
a final answer (won, sold out, already purchased, ended) or after its attempts; a 429 or a
503 is retried after its ``Retry-After``, as the contract asks of a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from antibot.proof_of_work import solve
from tcpdoor.frames import MessageType
from tcpdoor.load import DoorClient, DoorClosed

from .verdicts import percentile

FINAL = frozenset({"SUCCESS", "SOLD_OUT", "ALREADY_PURCHASED", "ENDED"})
"""Answers after which a shopper stops: nothing it tries again can change them."""
EXPECTED = FINAL | {"RATE_LIMITED", "POW_INVALID", "NOT_STARTED", "NOT_YOUR_TURN", "QUEUE_PASS_INVALID"}
"""The purchase answers a working stack gives a crowd; anything else is an error."""
LONGEST_WAIT_SECONDS = 5.0
"""A ``Retry-After`` longer than this is waited this long: the crowd is bounded in time."""
CROWD_SECONDS = 120.0
"""However it goes, the crowd stops this long after the start."""


@dataclass(frozen=True)
class Shopper:
    user_id: int
    token: str


@dataclass(frozen=True)
class Answer:
    """What one request heard: the contract's ``status`` (``ERROR`` for a failure), the
    reason of a 429, the wait asked, and the body."""

    status: str
    body: dict[str, Any]
    retry_after: float | None = None
    error: str = ""


class Door(Protocol):
    """One way into the stack: the REST API or the TCP door."""

    async def challenge(self, shopper: Shopper) -> Answer: ...
    async def purchase(self, shopper: Shopper, body: dict[str, str]) -> Answer: ...
    async def join(self, shopper: Shopper, body: dict[str, str]) -> Answer: ...
    async def place(self, shopper: Shopper, queue_pass: str) -> Answer: ...
    async def close(self) -> None: ...


def _retry_after(raw: str | None) -> float | None:
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


class HttpDoor:
    """The REST API, one HTTP/1.1 client with up to ``connections`` connections."""

    def __init__(self, base_url: str, sale_id: int, *, connections: int) -> None:
        self.sale_id = sale_id
        self.client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(30.0),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )

    async def _call(self, method: str, path: str, shopper: Shopper, **kwargs: Any) -> Answer:
        headers = {"Authorization": f"Token {shopper.token}"}
        try:
            response = await self.client.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as error:
            return Answer("ERROR", {}, error=f"{type(error).__name__}: {error}")
        try:
            body = response.json()
        except ValueError:
            return Answer("ERROR", {}, error=f"HTTP {response.status_code}, not JSON")
        if response.status_code >= 500:
            status = body.get("status", "ERROR") if isinstance(body, dict) else "ERROR"
            wait = _retry_after(response.headers.get("Retry-After"))
            return Answer(status, body, wait, f"HTTP {response.status_code}")
        if not isinstance(body, dict):
            return Answer("ERROR", {}, error=f"HTTP {response.status_code}, not a JSON object")
        status = body.get("status") or ("OK" if response.status_code < 300 else "ERROR")
        return Answer(str(status), body, _retry_after(response.headers.get("Retry-After")))

    async def challenge(self, shopper: Shopper) -> Answer:
        return await self._call("POST", f"/api/sales/{self.sale_id}/challenge/", shopper)

    async def purchase(self, shopper: Shopper, body: dict[str, str]) -> Answer:
        return await self._call("POST", f"/api/sales/{self.sale_id}/purchase/", shopper, json=body)

    async def join(self, shopper: Shopper, body: dict[str, str]) -> Answer:
        return _placed(await self._call("POST", f"/api/sales/{self.sale_id}/queue/", shopper, json=body))

    async def place(self, shopper: Shopper, queue_pass: str) -> Answer:
        path = f"/api/sales/{self.sale_id}/queue/"
        return _placed(await self._call("GET", path, shopper, params={"pass": queue_pass}))

    async def close(self) -> None:
        await self.client.aclose()


class TcpDoor:
    """The TCP door (the seed's TLV frames) through ``connections`` connections, each
    carrying one request at a time (``tcpdoor.load.DoorClient``)."""

    def __init__(self, host: str, port: int, sale_id: int, *, connections: int) -> None:
        self.host, self.port, self.sale_id = host, port, sale_id
        self.size = connections
        self.idle: asyncio.Queue[DoorClient] = asyncio.Queue()
        self.opened = 0

    async def _client(self) -> DoorClient:
        if self.idle.empty() and self.opened < self.size:
            self.opened += 1
            try:
                return await DoorClient.connect(self.host, self.port)
            except OSError:
                self.opened -= 1
                raise
        return await self.idle.get()

    async def _ask(self, kind: int, body: dict[str, Any]) -> Answer:
        try:
            client = await self._client()
        except OSError as error:
            return Answer("ERROR", {}, error=f"{type(error).__name__}: {error}")
        try:
            answer = await client.ask(kind, body)
        except (DoorClosed, OSError, ValueError) as error:
            self.opened -= 1
            await client.close()
            return Answer("ERROR", {}, error=f"{type(error).__name__}: {error}")
        self.idle.put_nowait(client)
        status = str(answer.get("status", "ERROR"))
        wait_ms = answer.get("retry_after_ms")
        return Answer(status, answer, wait_ms / 1000 if isinstance(wait_ms, int | float) else None)

    async def challenge(self, shopper: Shopper) -> Answer:
        return await self._ask(MessageType.CHALLENGE, {"product_id": self.sale_id, "token": shopper.token})

    async def purchase(self, shopper: Shopper, body: dict[str, str]) -> Answer:
        frame = {"product_id": self.sale_id, "token": shopper.token, **body}
        return await self._ask(MessageType.ATTEMPT_PURCHASE, frame)

    async def join(self, shopper: Shopper, body: dict[str, str]) -> Answer:
        frame = {"product_id": self.sale_id, "token": shopper.token, **body}
        answer = await self._ask(MessageType.JOIN_QUEUE, frame)
        return _place_from_door(answer)

    async def place(self, shopper: Shopper, queue_pass: str) -> Answer:
        frame = {"product_id": self.sale_id, "token": shopper.token, "pass": queue_pass}
        return _place_from_door(await self._ask(MessageType.QUEUE_PLACE, frame))

    async def close(self) -> None:
        while not self.idle.empty():
            await self.idle.get_nowait().close()


def _placed(answer: Answer) -> Answer:
    """A place over HTTP is the body itself, its ``status`` the place's own (``waiting``,
    ``admitted``): the answer is OK; an error body keeps its status."""
    if "pass" in answer.body and "number" in answer.body:
        return Answer("OK", answer.body, answer.retry_after)
    return answer


def _place_from_door(answer: Answer) -> Answer:
    """The door's place carries its own status as ``place_status`` (``status`` is OK)."""
    if answer.status != "OK":
        return answer
    body = dict(answer.body)
    body["status"] = body.pop("place_status", "")
    return Answer("OK", body, answer.retry_after)


@dataclass
class CrowdFigures:
    """What the crowd heard: purchase answers by status (and 429s by reason), each purchase
    answer's time as the client saw it, failures, and when wins and sold-out came (ms after
    the start by the server's clock as the crowd estimated it)."""

    shoppers: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    rate_limited: Counter[str] = field(default_factory=Counter)
    pow_refused: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    wins_at_ms: list[float] = field(default_factory=list)
    sold_out_seen_at_ms: float | None = None
    challenges: int = 0
    proofs_solved: int = 0
    joins: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def error(self, what: str) -> None:
        self.errors[what.split(":", 1)[0]] += 1
        if len(self.error_samples) < 10:
            self.error_samples.append(what[:300])

    def as_json(self) -> dict[str, Any]:
        """A summary small enough for one request body: the answer times as quantiles, the
        wins as their first and last."""
        latencies = self.latencies_ms

        def quantile(fraction: float) -> float | None:
            value = percentile(latencies, fraction)
            return None if value is None else round(value, 3)

        return {
            "shoppers": self.shoppers,
            "answers": dict(self.answers),
            "rate_limited": dict(self.rate_limited),
            "pow_refused": dict(self.pow_refused),
            "latency_ms": {
                "count": len(latencies),
                "p50": quantile(0.5),
                "p99": quantile(0.99),
                "max": quantile(1.0),
            },
            "errors": dict(self.errors),
            "error_samples": self.error_samples,
            "wins": len(self.wins_at_ms),
            "first_win_ms": round(min(self.wins_at_ms), 1) if self.wins_at_ms else None,
            "last_win_ms": round(max(self.wins_at_ms), 1) if self.wins_at_ms else None,
            "sold_out_seen_at_ms": self.sold_out_seen_at_ms,
            "challenges": self.challenges,
            "proofs_solved": self.proofs_solved,
            "joins": dict(self.joins),
            "seconds": round(self.seconds, 3),
        }


@dataclass
class _Proof:
    challenge: str = ""
    solution: str = ""

    def body(self) -> dict[str, str]:
        return {"challenge": self.challenge, "solution": self.solution} if self.challenge else {}


class Crowd:
    """One rehearsal's crowd on one door. ``prepare`` before the shadow sale opens, ``run``
    once it has a start; both bounded."""

    def __init__(
        self,
        door: Door,
        shoppers: list[Shopper],
        *,
        attempts: int,
        pow_difficulty: int,
        queued: bool,
        concurrency: int,
        solver: Executor | None = None,
    ) -> None:
        self.door, self.shoppers, self.attempts = door, shoppers, attempts
        self.pow, self.queued = pow_difficulty > 0, queued
        self.gate = asyncio.Semaphore(concurrency)
        self.solver = solver
        self.proofs = {shopper.user_id: _Proof() for shopper in shoppers}
        self.figures = CrowdFigures(shoppers=len(shoppers))
        self.offset_ms = 0.0
        self.start_ms = 0.0
        self.deadline = float("inf")

    def _server_now_ms(self) -> float:
        return time.time() * 1000 + self.offset_ms

    async def _solve(self, challenge: str, difficulty: int) -> str:
        loop = asyncio.get_running_loop()
        self.figures.proofs_solved += 1
        return await loop.run_in_executor(self.solver, solve, challenge, difficulty)

    async def _proof(self, shopper: Shopper) -> bool:
        """A fresh solved challenge for ``shopper`` (False: none could be had in time)."""
        while time.monotonic() < self.deadline:
            async with self.gate:
                answer = await self.door.challenge(shopper)
            if answer.status == "OK" and "challenge" in answer.body:
                self.figures.challenges += 1
                challenge, difficulty = str(answer.body["challenge"]), int(answer.body["difficulty"])
                self.proofs[shopper.user_id] = _Proof(challenge, await self._solve(challenge, difficulty))
                return True
            if answer.retry_after is not None:  # A 429 or a 503: the contract says when to ask again.
                await self._wait(answer.retry_after)
                continue
            self.figures.error(answer.error or f"challenge answered {answer.status}")
            return False
        return False

    async def _wait(self, seconds: float | None) -> None:
        wait = min(LONGEST_WAIT_SECONDS, seconds if seconds is not None else 1.0)
        await asyncio.sleep(wait * random.uniform(0.8, 1.2))

    async def prepare(self) -> None:
        """Before the start: each shopper's first proof of work, solved."""
        if self.pow:
            self.deadline = time.monotonic() + CROWD_SECONDS
            await asyncio.gather(*(self._proof(shopper) for shopper in self.shoppers))

    async def run(self, *, start_ms: float, server_now_ms: float) -> CrowdFigures:
        """Every shopper at once from ``start_ms`` (the server's clock, whose reading
        ``server_now_ms`` was taken just now)."""
        self.offset_ms = server_now_ms - time.time() * 1000
        self.start_ms = start_ms
        began = time.monotonic()
        self.deadline = began + max(0.0, (start_ms - server_now_ms) / 1000) + CROWD_SECONDS
        await asyncio.sleep(max(0.0, (start_ms - self._server_now_ms()) / 1000))
        shop: Callable[[Shopper], Awaitable[None]] = self._queued_shopper if self.queued else self._shopper
        await asyncio.gather(*(shop(shopper) for shopper in self.shoppers))
        self.figures.seconds = time.monotonic() - began
        return self.figures

    async def _attempt(self, shopper: Shopper, body: dict[str, str]) -> Answer:
        async with self.gate:
            sent = time.perf_counter()
            answer = await self.door.purchase(shopper, body)
            took_ms = (time.perf_counter() - sent) * 1000
        figures = self.figures
        if answer.status not in EXPECTED:
            figures.answers["ERROR" if answer.error else answer.status] += 1
            figures.error(answer.error or f"purchase answered {answer.status}")
            return answer
        figures.latencies_ms.append(took_ms)
        figures.answers[answer.status] += 1
        after_start = self._server_now_ms() - self.start_ms
        if answer.status == "RATE_LIMITED":
            figures.rate_limited[str(answer.body.get("reason", ""))] += 1
        elif answer.status == "POW_INVALID":
            figures.pow_refused[str(answer.body.get("detail", "")).split(":", 1)[0]] += 1
        elif answer.status == "SUCCESS":
            figures.wins_at_ms.append(after_start)
        elif answer.status == "SOLD_OUT" and figures.sold_out_seen_at_ms is None:
            figures.sold_out_seen_at_ms = round(after_start, 1)
        return answer

    async def _after(self, shopper: Shopper, answer: Answer) -> bool:
        """Get ready for the next attempt; False when this shopper is done."""
        if answer.status in FINAL or (answer.status == "ERROR" and not answer.retry_after):
            return False
        if answer.status == "POW_INVALID":
            return await self._proof(shopper)
        if answer.status == "NOT_STARTED":
            await asyncio.sleep(0.1)
        elif answer.status not in EXPECTED and answer.retry_after is None:
            return False
        else:
            await self._wait(answer.retry_after)
        return time.monotonic() < self.deadline

    async def _shopper(self, shopper: Shopper) -> None:
        for _ in range(self.attempts):
            answer = await self._attempt(shopper, self.proofs[shopper.user_id].body())
            if not await self._after(shopper, answer):
                return

    async def _queued_shopper(self, shopper: Shopper) -> None:
        """Join the line, wait for the turn, buy with the pass (a turn passed: join again)."""
        tries = 0
        while tries < self.attempts and time.monotonic() < self.deadline:
            async with self.gate:
                place = await self.door.join(shopper, self.proofs[shopper.user_id].body())
            self.figures.joins[place.body.get("status", place.status) if place.status == "OK" else place.status] += 1
            if place.status != "OK":
                if place.status in FINAL:
                    self.figures.answers[place.status] += 1
                    return
                if place.status == "POW_INVALID" and await self._proof(shopper):
                    continue
                if place.retry_after is not None:  # Rate limited, away, or the line not open yet.
                    await self._wait(place.retry_after)
                    continue
                self.figures.error(place.error or f"join answered {place.status}")
                return
            queue_pass = str(place.body.get("pass", ""))
            while time.monotonic() < self.deadline and place.body.get("status") in ("pre_queue", "waiting"):
                eta = place.body.get("eta_seconds")
                await asyncio.sleep(min(1.0, max(0.05, float(eta) if isinstance(eta, int | float) else 0.5)))
                async with self.gate:
                    read = await self.door.place(shopper, queue_pass)
                if read.status == "OK":
                    place = read
                elif read.status in FINAL:
                    self.figures.answers[read.status] += 1
                    return
            while tries < self.attempts and time.monotonic() < self.deadline:
                tries += 1
                answer = await self._attempt(shopper, {"pass": queue_pass})
                if answer.status == "QUEUE_PASS_INVALID":
                    break  # The turn passed: join again at the back.
                if not await self._after(shopper, answer):
                    return


def door_for(base_url: str, sale_id: int, *, tcp: str | None, connections: int) -> Door:
    """The REST API at ``base_url``, or with ``tcp`` (``host:port``, or ``:port`` on the URL's
    host) the TCP door."""
    if tcp is None:
        return HttpDoor(base_url, sale_id, connections=connections)
    host, _, port = tcp.rpartition(":")
    return TcpDoor(host or urlsplit(base_url).hostname or "127.0.0.1", int(port), sale_id, connections=connections)


@contextlib.contextmanager
def proof_solver(workers: int) -> Any:
    """A process pool for the proofs of work (the work is CPU-bound Python); where this
    process may not start children (a daemonic worker), threads, which still keep the crowd's
    loop free."""
    try:
        pool: Executor = ProcessPoolExecutor(max_workers=workers)
        pool.submit(int, 0).result(timeout=60)
    except (OSError, AssertionError, RuntimeError):
        pool = ThreadPoolExecutor(max_workers=workers)
    try:
        yield pool
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
