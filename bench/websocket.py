"""Scenario 9: how many storefront WebSockets one ws process (uvicorn, ASGI) holds, and how
long it takes to deliver ``sale_started`` to all of them.

The clients (the ``websockets`` library, one asyncio loop in this process) open their sockets
to a sale that starts a few seconds later, wait for ``hello``, then for ``sale_started``; the
delivery time of each is its arrival minus the sale's start instant (the machine's clock,
which is Redis's too here).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
from collections.abc import Callable
from typing import Any

import websockets

from . import data
from .plan import BenchPlan
from .stack import BenchStack, StackError


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _client(url: str, origin: str, *, until: float, opened: asyncio.Event, arrivals: list[float]) -> str:
    try:
        async with websockets.connect(url, origin=origin, open_timeout=30, max_queue=None) as socket:  # type: ignore[arg-type]
            first = json.loads(await asyncio.wait_for(socket.recv(), timeout=30))
            if first.get("type") != "hello":
                return f"first message {first.get('type')}"
            opened.set()
            while True:
                remaining = until - time.time()
                if remaining <= 0:
                    return "no sale_started"
                message = json.loads(await asyncio.wait_for(socket.recv(), timeout=remaining))
                if message.get("type") == "sale_started":
                    arrivals.append(time.time())
                    return "ok"
    except (OSError, TimeoutError) as error:
        return type(error).__name__
    except Exception as error:  # noqa: BLE001 - any failure of one client is counted, not fatal
        return type(error).__name__


async def _crowd(url: str, origin: str, *, clients: int, starts_at: float, until: float) -> dict[str, Any]:
    arrivals: list[float] = []
    opened_events = [asyncio.Event() for _ in range(clients)]
    began = time.time()
    tasks = [
        asyncio.create_task(_client(url, origin, until=until, opened=opened_events[index], arrivals=arrivals))
        for index in range(clients)
    ]
    await asyncio.wait(
        [asyncio.ensure_future(event.wait()) for event in opened_events], timeout=starts_at - time.time()
    )
    held = sum(1 for event in opened_events if event.is_set())
    all_open_s = time.time() - began
    outcomes = await asyncio.gather(*tasks)
    failures: dict[str, int] = {}
    for outcome in outcomes:
        if outcome != "ok":
            failures[outcome] = failures.get(outcome, 0) + 1
    delays_ms = [(arrival - starts_at) * 1000 for arrival in arrivals]
    return {
        "held_before_start": held,
        "seconds_to_open_all": round(all_open_s, 2),
        "received_sale_started": len(arrivals),
        "failures": failures,
        "delivery_ms": (
            {
                "p50": round(_percentile(delays_ms, 0.50), 1),
                "p99": round(_percentile(delays_ms, 0.99), 1),
                "max": round(max(delays_ms), 1),
                "all_delivered_after_start": round(max(delays_ms), 1),
            }
            if delays_ms
            else {}
        ),
    }


def websocket_scenario(*, stack: BenchStack, plan: BenchPlan, log: Callable[[str], None]) -> dict[str, Any]:
    if importlib.util.find_spec("sales.consumers") is None:
        log("  not measured: this checkout has no WebSocket consumer (sales/consumers.py)")
        return {"measured": False, "summary": "not measured: no WebSocket consumer in this checkout"}
    try:
        ws = stack.start_ws()
    except StackError as error:
        log(f"  not measured: the ws process did not start: {error}")
        return {"measured": False, "summary": "not measured: the ws process did not start"}
    lead_s = 10.0 if not plan.quick else 3.0
    sale = data.sale_open(stock=10, pow_difficulty=plan.difficulty, starts_in_s=lead_s)
    starts_at = sale.starts_at.timestamp()
    url = f"ws://127.0.0.1:{ws.port}/ws/sales/{sale.pk}/"
    origin = f"http://127.0.0.1:{ws.port}"
    result = asyncio.run(_crowd(url, origin, clients=plan.ws_connections, starts_at=starts_at, until=starts_at + 20.0))
    result.update({"measured": True, "clients": plan.ws_connections, "process": "uvicorn, one process"})
    delivery = result["delivery_ms"]
    result["summary"] = (
        f"{result['held_before_start']}/{plan.ws_connections} sockets held by one uvicorn process "
        f"(all open in {result['seconds_to_open_all']} s); sale_started reached "
        f"{result['received_sale_started']} of them, the last {delivery.get('max', 'n/a')} ms after the start "
        f"(p50 {delivery.get('p50', 'n/a')} ms)" + (f"; failures {result['failures']}" if result["failures"] else "")
    )
    log(f"  {result['summary']}")
    return result
