"""Scenario 9: how many WebSocket connections one ws process holds, and how long it takes to
deliver ``sale_started`` to all of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .plan import BenchPlan
from .stack import BenchStack


def websocket_scenario(*, stack: BenchStack, plan: BenchPlan, log: Callable[[str], None]) -> dict[str, Any]:
    log("  not measured yet")
    return {"measured": False, "summary": "not measured"}
