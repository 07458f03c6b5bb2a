"""Log entries as the sales scripts sequence them, written straight into a sale's log stream,
so the log's side is tested on its own: ``seq`` and ``entry`` (canonical JSON: sorted keys,
no spaces) per stream entry, seq from 0 without a gap, and their receipts.
``build_until``: beat's part, a real worker's pass sent until a state holds;
``build_here``: a pass in this process, once no other pass holds the log."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from core.redis_store import inventory_redis
from salelog.builder import BuildPass, sale_log_build
from salelog.tasks import build_sale_logs
from sales import keys
from sales.receipts import receipt_for
from tests.polling import wait_for
from tests.salelog import LOG_QUEUE


def canonical(value: dict[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def shopper(name: object) -> str:
    return hashlib.sha256(str(name).encode()).hexdigest()[:32]


def attempt(sale_id: int, seq: int, outcome: str, *, who: object = None, time_ms: int = 0) -> bytes:
    return canonical(
        {
            "kind": "attempt",
            "outcome": outcome,
            "sale": sale_id,
            "seq": seq,
            "shopper": shopper(seq if who is None else who),
            "time_ms": time_ms or 1_796_160_000_000 + seq,
        }
    )


def join(sale_id: int, seq: int, number: int, *, time_ms: int = 0) -> bytes:
    return canonical(
        {
            "kind": "join",
            "number": number,
            "outcome": "waiting",
            "sale": sale_id,
            "seq": seq,
            "shopper": shopper(f"joiner-{number}"),
            "time_ms": time_ms or 1_796_160_000_000 + seq,
        }
    )


def attempts(sale_id: int, outcomes: Sequence[str], *, first_seq: int = 0, time_ms: int = 0) -> list[bytes]:
    return [
        attempt(sale_id, first_seq + n, outcome, time_ms=time_ms + n if time_ms else 0)
        for n, outcome in enumerate(outcomes)
    ]


def stream_write(sale_id: int, entries: Sequence[bytes], *, first_seq: int | None = None) -> None:
    """XADD each entry with its seq (read from the entry unless ``first_seq`` says), all in one
    transaction: a builder sees all of them or none."""
    client = inventory_redis()
    pipe = client.pipeline(transaction=True)
    for n, entry in enumerate(entries):
        seq = json.loads(entry)["seq"] if first_seq is None else first_seq + n
        pipe.xadd(keys.log_stream_key(sale_id), {"seq": seq, "entry": entry.decode()})
    pipe.execute()


def receipt(sale_id: int, seq: int, entry: bytes) -> dict[str, Any]:
    """The receipt the sale's answer carries for an entry (``sales.receipts``)."""
    return receipt_for(sale_id=sale_id, seq=seq, entry=entry, time_ms=json.loads(entry)["time_ms"])


def build_until(
    condition: Callable[[], bool], *, what: str, queue: str = LOG_QUEUE, timeout: float = 60.0, resend: float = 20.0
) -> None:
    """Send the builder's task to a real worker on ``queue``, as beat does, until
    ``condition()`` holds: again only when ``resend`` seconds passed without it (a pass that
    found the log held by another did nothing), so a pass is rarely left queued behind."""
    deadline = time.monotonic() + timeout
    while True:
        build_sale_logs.apply_async(queue=queue, expires=resend)
        try:
            wait_for(condition, what=what, timeout=min(resend, max(0.0, deadline - time.monotonic())))
            return
        except AssertionError:
            if time.monotonic() >= deadline:
                raise


def build_here(**arguments: Any) -> BuildPass:
    """``sale_log_build`` in this process, again while a worker's pass holds the log."""
    passes: list[BuildPass] = []

    def done() -> bool:
        passes.append(sale_log_build(**arguments))
        return not passes[-1].busy

    wait_for(done, what=f"the log of sale {arguments.get('sale_id')} free to build")
    return passes[-1]
