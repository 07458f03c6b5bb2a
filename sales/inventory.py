"""The sale's inventory in Redis: the purchase script, loading a sale, reading its state.

Redis is the source of truth for stock while a sale runs (docs/design.md, "Shape"). Nothing here touches
PostgreSQL.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, cast

from redis.cluster import RedisCluster

from antibot import keys as antibot_keys
from core.redis_store import inventory_redis, lua_script, sale_transaction
from core.steps import CommandCall, ScriptCall, run_step

from . import keys
from .line import LineState

_LUA = Path(__file__).resolve().parent / "lua"
PURCHASE_SCRIPT = lua_script(_LUA / "purchase.lua", preludes=(_LUA / "line.lua",))
JOIN_SCRIPT = lua_script(_LUA / "join.lua", preludes=(_LUA / "line.lua",))
RELEASE_SCRIPT = lua_script(_LUA / "release.lua")
LEASE_SCRIPT = lua_script(_LUA / "lease.lua")
SALE_STATE_SCRIPT = lua_script(_LUA / "sale_state.lua")
HOLDERS_SCRIPT = lua_script(_LUA / "holders.lua")
LINE_COUNTS_SCRIPT = lua_script(_LUA / "line_counts.lua", preludes=(_LUA / "line.lua",))


class ScriptStatus(StrEnum):
    """Every answer ``purchase.lua`` can give."""

    SUCCESS = "SUCCESS"
    SOLD_OUT = "SOLD_OUT"
    ALREADY_PURCHASED = "ALREADY_PURCHASED"
    NOT_STARTED = "NOT_STARTED"
    ENDED = "ENDED"
    POW_REUSED = "POW_REUSED"
    NO_SALE = "NO_SALE"
    KEY_REUSED = "KEY_REUSED"
    NOT_YOUR_TURN = "NOT_YOUR_TURN"
    TURN_PASSED = "TURN_PASSED"
    PASS_STALE = "PASS_STALE"


@dataclass(frozen=True, slots=True)
class ScriptAnswer:
    """What ``purchase.lua`` decided. ``remaining`` is -1 where the script did not read it;
    ``replayed``: the answer stored under the request's Idempotency-Key, given again."""

    status: ScriptStatus
    order_id: str
    remaining: int
    retry_after_ms: int
    kick_drain: bool
    now_ms: int
    replayed: bool = False
    seq: int = -1
    """The attempt's place in the sale's log (-1: not logged)."""
    entry: str = ""
    """The log entry's exact text (what its leaf hashes)."""

    @classmethod
    def from_reply(cls, reply: list[Any]) -> ScriptAnswer:
        status, order_id, remaining, retry_after_ms, kick, now_ms, replayed, seq, entry = reply
        return cls(
            ScriptStatus(status),
            order_id,
            int(remaining),
            int(retry_after_ms),
            kick == 1,
            int(now_ms),
            replayed == 1,
            int(seq),
            entry or "",
        )


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """What a shopper's idempotency records keep of one final answer (``purchase.lua`` writes
    them as ``"<fingerprint>|<status>|<order id>|<remaining>|<seq>|<time ms>"``: the log's
    entry of the answer is rebuilt from them, ``log_entry_attempt``)."""

    fingerprint: str
    answer: ScriptAnswer

    @classmethod
    def parse(cls, stored: str, *, sale_id: int, shopper: str) -> IdempotencyRecord:
        fingerprint, status, order_id, remaining, seq, at_ms = stored.split("|")
        entry = log_entry_attempt(status, sale_id=sale_id, seq=int(seq), shopper=shopper, time_ms=int(at_ms))
        answer = ScriptAnswer(
            ScriptStatus(status), order_id, int(remaining), 0, False, int(at_ms), True, int(seq), entry
        )
        return cls(fingerprint, answer)


_LOGGED_WORDS = {"POW_REUSED": "POW_INVALID", "TURN_PASSED": "QUEUE_PASS_INVALID", "PASS_STALE": "QUEUE_PASS_INVALID"}


def log_entry_attempt(status: str, *, sale_id: int, seq: int, shopper: str, time_ms: int) -> str:
    """The log entry ``purchase.lua`` appends for an attempt (``""`` when it was not logged):
    the same canonical JSON, byte for byte."""
    if seq < 0:
        return ""
    outcome = _LOGGED_WORDS.get(status, status)
    return (
        f'{{"kind":"attempt","outcome":"{outcome}","sale":{int(sale_id)},"seq":{int(seq)},'
        f'"shopper":"{shopper}","time_ms":{int(time_ms)}}}'
    )


IDEMPOTENCY_FINAL = frozenset(
    {ScriptStatus.SUCCESS, ScriptStatus.ALREADY_PURCHASED, ScriptStatus.SOLD_OUT, ScriptStatus.ENDED}
)
"""The answers an Idempotency-Key keeps: final ones, which a retry would only hear again.
A temporary refusal (not started, a spent challenge; and every answer the funnel gives in
the process) is never stored, so a retry with the same key is judged afresh."""


@dataclass(frozen=True, slots=True)
class IdempotencyPolicy:
    """How many final answers one shopper's keys may keep per sale, and for how long."""

    per_shopper: int
    after_end_ms: int
    longest_ms: int


def purchase_call(
    *,
    sale_id: int,
    user_id: int | str,
    order_id: str,
    challenge_nonce: str = "",
    challenge_ttl_seconds: int = 0,
    idempotency_digest: str = "",
    idempotency_fingerprint: str = "",
    idempotency: IdempotencyPolicy | None = None,
    queue_number: int = 0,
    turn_seconds: int = 0,
    crowd_interval_ms: int = 1000,
    shopper: str = "",
    drain_kick_ms: int = 250,
) -> ScriptCall:
    """One attempt of ``lua/purchase.lua``: the script's KEYS and ARGV contract, in one place.
    ``user_id`` is text only for a load generator's placeholder (the benchmark's
    redis-benchmark run); ``shopper`` is the shopper's salted hash for the sale's log (empty:
    not logged)."""
    meta = keys.meta_key(sale_id)
    keyspace = keys.keyspace(sale_id)
    spend_challenge = bool(challenge_nonce) and challenge_ttl_seconds > 0
    keyed = bool(idempotency_digest) and idempotency is not None
    policy = idempotency or IdempotencyPolicy(0, 0, 0)
    return ScriptCall(
        PURCHASE_SCRIPT,
        (
            meta,
            keys.stock_key(sale_id),
            keys.buyers_key(sale_id),
            keys.returned_buyers_key(sale_id),
            keys.orders_stream_key(sale_id),
            keys.drain_kick_key(sale_id),
            antibot_keys.spent_challenge_key(keyspace, challenge_nonce) if spend_challenge else meta,
            antibot_keys.idempotency_records_key(keyspace, int(user_id)) if keyed else meta,
            keys.line_key(sale_id) if queue_number else meta,
            keys.line_state_key(sale_id) if queue_number else meta,
            keys.log_stream_key(sale_id) if shopper else meta,
            keys.log_seq_key(sale_id) if shopper else meta,
        ),
        (
            user_id,
            order_id,
            keys.EVENTS_CHANNEL,
            drain_kick_ms,
            challenge_ttl_seconds if spend_challenge else 0,
            idempotency_fingerprint if keyed else "",
            idempotency_digest if keyed else "",
            policy.per_shopper,
            policy.after_end_ms,
            policy.longest_ms,
            int(queue_number),
            turn_seconds,
            crowd_interval_ms,
            shopper,
        ),
    )


def idempotency_record_call(*, sale_id: int, user_id: int, digest: str) -> CommandCall:
    """The shopper's stored answer for one Idempotency-Key, if any (read it with
    ``IdempotencyRecord.parse``)."""
    return CommandCall(("HGET", antibot_keys.idempotency_records_key(keys.keyspace(sale_id), user_id), digest))


def purchase_run(*, sale_id: int, user_id: int, order_id: str, **options: Any) -> ScriptAnswer:
    """Run one purchase attempt on this process's client (see ``lua/purchase.lua`` for the
    steps), with none of the funnel in front: one round trip."""
    call = purchase_call(sale_id=sale_id, user_id=user_id, order_id=order_id, **options)
    return ScriptAnswer.from_reply(run_step(inventory_redis(), call))


def lease_call(*, sale_id: int, want: int) -> ScriptCall:
    """Take up to ``want`` tokens of the sale's bucket (``lua/lease.lua``)."""
    return ScriptCall(LEASE_SCRIPT, (keys.meta_key(sale_id), keys.bucket_key(sale_id)), (max(1, int(want)),))


@dataclass(frozen=True, slots=True)
class Lease:
    granted: int  # -1: no such sale
    retry_after_ms: int
    now_ms: int

    @classmethod
    def from_reply(cls, reply: list[Any]) -> Lease:
        granted, retry_after_ms, now_ms = reply
        return cls(int(granted), int(retry_after_ms), int(now_ms))


def sale_state_call(sale_id: int) -> ScriptCall:
    """The meta, the stock, the Redis clock and the line (a queue-mode sale's) in one round
    trip (``lua/sale_state.lua``)."""
    return ScriptCall(
        SALE_STATE_SCRIPT, (keys.meta_key(sale_id), keys.stock_key(sale_id), keys.line_state_key(sale_id)), ()
    )


def line_state_from_reply(raw: list[Any]) -> LineState:
    """The line's state as ``sale_state.lua`` returns it (joined, served, at_ms, pre_queue,
    seed, measured; the seed only once the sale started)."""
    joined, served, line_at_ms, pre_queue, seed, measured = raw
    return LineState(
        joined=int(joined or 0),
        served=float(served or 0),
        # Never moved yet: 0 served as of the start (the counter moves from there).
        at_ms=int(line_at_ms or 0),
        pre_queue=int(pre_queue) if pre_queue is not None else -1,
        seed=seed or "",
        measured_rate=float(measured or 0),
    )


class JoinStatus(StrEnum):
    """Every answer ``join.lua`` can give."""

    WAITING = "WAITING"
    ADMITTED = "ADMITTED"
    PRE_QUEUE = "PRE_QUEUE"
    TURN_PASSED = "TURN_PASSED"
    NOT_IN_LINE = "NOT_IN_LINE"
    NOT_OPEN = "NOT_OPEN"
    SOLD_OUT = "SOLD_OUT"
    ENDED = "ENDED"
    NOT_QUEUED = "NOT_QUEUED"
    NO_SALE = "NO_SALE"
    ALREADY_PURCHASED = "ALREADY_PURCHASED"


@dataclass(frozen=True, slots=True)
class JoinAnswer:
    """What ``join.lua`` said: the shopper's number and position, and the line around them."""

    status: JoinStatus
    number: int
    position: int
    served: float
    joined: int
    rate: float
    measured_rate: float
    now_ms: int
    created: bool
    seq: int = -1
    entry: str = ""
    order_id: str = ""

    @classmethod
    def from_reply(cls, reply: list[Any]) -> JoinAnswer:
        status, number, position, served, joined, rate, measured, now_ms, created, seq, entry, order_id = reply
        return cls(
            JoinStatus(status),
            int(number),
            int(position),
            float(served),
            int(joined),
            float(rate),
            float(measured),
            int(now_ms),
            created == 1,
            int(seq),
            entry or "",
            order_id or "",
        )


def join_call(
    *, sale_id: int, user_id: int, read_only: bool, turn_seconds: int, crowd_interval_ms: int, shopper: str = ""
) -> ScriptCall:
    """Join the sale's line, or (``read_only``) read the shopper's place (``lua/join.lua``);
    a join that gives a number is logged under ``shopper`` (empty: not logged)."""
    return ScriptCall(
        JOIN_SCRIPT,
        (
            keys.meta_key(sale_id),
            keys.stock_key(sale_id),
            keys.line_key(sale_id),
            keys.line_state_key(sale_id),
            keys.log_stream_key(sale_id),
            keys.log_seq_key(sale_id),
            keys.buyers_key(sale_id),
            keys.returned_buyers_key(sale_id),
        ),
        (int(user_id), "place" if read_only else "join", turn_seconds, crowd_interval_ms, shopper),
    )


def holders_call(sale_id: int, user_id: int | None = None) -> ScriptCall:
    """Every holder of the sale, or the one order ``user_id`` holds (``lua/holders.lua``)."""
    return ScriptCall(
        HOLDERS_SCRIPT,
        (keys.buyers_key(sale_id), keys.returned_buyers_key(sale_id)),
        ("" if user_id is None else int(user_id),),
    )


def holders_from_reply(reply: list[list[str]]) -> dict[int, str]:
    holders: dict[int, str] = {}
    for flat in reversed(reply):  # Returned buyers first, current buyers win.
        holders.update({int(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)})
    return holders


@dataclass(frozen=True, slots=True)
class Release:
    returned: bool
    remaining: int


def unit_release(*, sale_id: int, user_id: int, order_id: str) -> Release:
    """Give the unit ``order_id`` holds back to the stock and publish the stock-return event
    (``lua/release.lua``). Idempotent: a unit already returned is not returned twice."""
    status, remaining = RELEASE_SCRIPT(
        [
            keys.meta_key(sale_id),
            keys.stock_key(sale_id),
            keys.buyers_key(sale_id),
            keys.returned_buyers_key(sale_id),
        ],
        [user_id, order_id, keys.EVENTS_CHANNEL],
        client=inventory_redis(),
    )
    return Release(returned=status == "RETURNED", remaining=int(remaining))


def line_seed_ensure(sale_id: int) -> str:
    """The seed a queue-mode sale shuffles its pre-queue with: drawn the first time, kept in
    the line's state (it is revealed at the start; only its hash is published before)."""
    client = inventory_redis()
    client.hsetnx(keys.line_state_key(sale_id), "seed", secrets.token_hex(32))
    return str(client.hget(keys.line_state_key(sale_id), "seed"))


def line_state(sale_id: int) -> dict[str, str]:
    """The line's state hash as Redis holds it (the operator's view)."""
    return cast(dict[str, str], inventory_redis().hgetall(keys.line_state_key(sale_id)))


@dataclass(frozen=True, slots=True)
class LineCounts:
    """A queue-mode sale's line at one instant of the Redis clock, as its operator sees it
    (docs/observability.md, "The waiting room")."""

    joined: int
    """Numbers given: the last one (they are gap-free)."""
    served: float
    """The serving counter, where the next call would move it (it may run a second's
    serving ahead of an empty line)."""
    rate: float
    """Places let in per second now: the sale's serving rate, or auto from the units left."""
    measured_rate: float
    """Places let in per second, as the scripts last measured it."""
    window_open: bool
    """The sale's window is open by the Redis clock: the counter moves."""
    admitted: int
    """min(joined, served): places let in."""
    waiting: int
    """joined - admitted: places still to be let in (the line's length)."""
    admitted_unused: int
    """Admitted places whose shopper has not bought and whose turn has not passed."""
    abandoned: int
    """Admitted places whose turn passed without a purchase."""

    @classmethod
    def from_reply(cls, reply: list[Any]) -> LineCounts:
        joined, served, rate, measured, window_open, admitted, passed, bought_in_turn, bought_passed = reply
        admitted, passed = int(admitted), int(passed)
        return cls(
            joined=int(joined),
            served=float(served),
            rate=float(rate),
            measured_rate=float(measured),
            window_open=window_open == 1,
            admitted=admitted,
            waiting=int(joined) - admitted,
            admitted_unused=admitted - passed - int(bought_in_turn),
            abandoned=passed - int(bought_passed),
        )


def line_counts(*, sale_id: int, turn_seconds: int, crowd_interval_ms: int) -> LineCounts | None:
    """The sale's line counted in one read-only call (``lua/line_counts.lua``); None for a
    sale that is not loaded or admits directly. Its cost grows with the units sold, not
    with the line."""
    reply = LINE_COUNTS_SCRIPT(
        [
            keys.meta_key(sale_id),
            keys.stock_key(sale_id),
            keys.line_key(sale_id),
            keys.line_state_key(sale_id),
            keys.buyers_key(sale_id),
            keys.returned_buyers_key(sale_id),
        ],
        [turn_seconds, crowd_interval_ms],
        client=inventory_redis(),
    )
    return LineCounts.from_reply(reply) if reply else None


def sale_returned_buyers(sale_id: int) -> dict[int, str]:
    raw = cast(dict[str, str], inventory_redis().hgetall(keys.returned_buyers_key(sale_id)))
    return {int(user): order_id for user, order_id in raw.items()}


@dataclass(frozen=True, slots=True)
class SaleMeta:
    """What the purchase script needs to know about a sale, as stored in its meta hash."""

    sale_id: int
    product_id: int
    total: int
    starts_at_ms: int
    ends_at_ms: int
    price: str
    per_user_limit: int
    pow_difficulty: int
    bucket_capacity: int
    bucket_refill_per_second: int
    crowd_factor: float = 0.0
    admission: str = "direct"
    pre_queue_opens_at_ms: int = 0
    """0: the line opens at the start."""
    shuffle_pre_queue: bool = False
    shuffle_commitment: str = ""
    """The SHA-256 of the pre-queue's seed, published before the line opens."""
    serving_rate: int = 0
    """Shoppers let in per second; 0: auto (from the units left)."""

    @property
    def queued(self) -> bool:
        return self.admission == "queue"

    def as_hash(self) -> dict[str, str | int]:
        return {
            "sale_id": self.sale_id,
            "product_id": self.product_id,
            "total": self.total,
            "starts_at_ms": self.starts_at_ms,
            "ends_at_ms": self.ends_at_ms,
            "price": self.price,
            "per_user_limit": self.per_user_limit,
            "pow_difficulty": self.pow_difficulty,
            "bucket_capacity": self.bucket_capacity,
            "bucket_refill_per_second": self.bucket_refill_per_second,
            "crowd_factor": str(self.crowd_factor),
            "admission": self.admission,
            "pre_queue_opens_at_ms": self.pre_queue_opens_at_ms,
            "shuffle_pre_queue": int(self.shuffle_pre_queue),
            "shuffle_commitment": self.shuffle_commitment,
            "serving_rate": self.serving_rate,
        }

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> SaleMeta:
        return cls(
            sale_id=int(raw["sale_id"]),
            product_id=int(raw["product_id"]),
            total=int(raw["total"]),
            starts_at_ms=int(raw["starts_at_ms"]),
            ends_at_ms=int(raw["ends_at_ms"]),
            price=raw["price"],
            per_user_limit=int(raw["per_user_limit"]),
            pow_difficulty=int(raw["pow_difficulty"]),
            bucket_capacity=int(raw["bucket_capacity"]),
            bucket_refill_per_second=int(raw["bucket_refill_per_second"]),
            crowd_factor=float(raw.get("crowd_factor") or 0),
            admission=raw.get("admission") or "direct",
            pre_queue_opens_at_ms=int(raw.get("pre_queue_opens_at_ms") or 0),
            shuffle_pre_queue=raw.get("shuffle_pre_queue") == "1",
            shuffle_commitment=raw.get("shuffle_commitment") or "",
            serving_rate=int(raw.get("serving_rate") or 0),
        )


@dataclass(frozen=True, slots=True)
class LoadResult:
    previous: SaleMeta | None
    stock_initialized: bool


def sale_load(meta: SaleMeta) -> LoadResult:
    """Write the sale's meta hash and set its stock to the total only if no counter exists:
    loading again (a new lead-time tick, an admin edit) never resets a live sale."""
    with sale_transaction(inventory_redis()) as pipe:
        pipe.hgetall(keys.meta_key(meta.sale_id))
        pipe.hset(keys.meta_key(meta.sale_id), mapping=cast(dict[Any, Any], meta.as_hash()))
        pipe.set(keys.stock_key(meta.sale_id), meta.total, nx=True)
        previous_raw, _, initialized = pipe.execute()
    previous = SaleMeta.from_hash(previous_raw) if previous_raw else None
    return LoadResult(previous=previous, stock_initialized=bool(initialized))


def sale_meta(sale_id: int) -> SaleMeta | None:
    raw = cast(dict[str, str], inventory_redis().hgetall(keys.meta_key(sale_id)))
    return SaleMeta.from_hash(raw) if raw else None


@dataclass(frozen=True, slots=True)
class SaleCounts:
    """Redis's side of a sale at one instant (one MULTI, so the numbers agree)."""

    loaded: bool
    total: int
    remaining: int
    buyers: int
    stream_length: int

    @property
    def stock_consistent(self) -> bool:
        """Invariant I1: remaining stock plus buyers equals the total."""
        return self.remaining + self.buyers == self.total


def sale_counts(sale_id: int) -> SaleCounts:
    with sale_transaction(inventory_redis()) as pipe:
        pipe.hget(keys.meta_key(sale_id), "total")
        pipe.get(keys.stock_key(sale_id))
        pipe.hlen(keys.buyers_key(sale_id))
        pipe.xlen(keys.orders_stream_key(sale_id))
        total, remaining, buyers, stream_length = pipe.execute()
    return SaleCounts(
        loaded=total is not None,
        total=int(total or 0),
        remaining=int(remaining or 0),
        buyers=int(buyers),
        stream_length=int(stream_length),
    )


def remaining_stock_many(sale_ids: list[int]) -> dict[int, int | None]:
    """Remaining units per sale, one round trip per server; None for a sale not in Redis.
    (Different sales' keys are in different slots: on a cluster, one MGET per node.)"""
    if not sale_ids:
        return {}
    client = inventory_redis()
    stock_keys = [keys.stock_key(sale_id) for sale_id in sale_ids]
    values = client.mget_nonatomic(stock_keys) if isinstance(client, RedisCluster) else client.mget(stock_keys)
    return {
        sale_id: (int(value) if value is not None else None) for sale_id, value in zip(sale_ids, values, strict=True)
    }


def sale_buyers(sale_id: int) -> dict[int, str]:
    """Every buyer of the sale and their order id (HSCAN, so a big sale does not block Redis)."""
    return {
        int(user): order_id for user, order_id in inventory_redis().hscan_iter(keys.buyers_key(sale_id), count=1000)
    }


def sale_stats(sale_id: int) -> dict[str, int]:
    stats = cast(dict[str, str], inventory_redis().hgetall(keys.stats_key(sale_id)))
    return {status: int(count) for status, count in stats.items()}


def sale_unload(sale_id: int) -> int:
    """Delete every key of the sale, the expiring ones included. Returns how many."""
    client = inventory_redis()
    doomed = list(client.scan_iter(match=keys.sale_key_pattern(sale_id), count=1000))
    deleted = 0
    for start in range(0, len(doomed), 500):
        deleted += client.delete(*doomed[start : start + 500])
    return deleted


def redis_time_call() -> CommandCall:
    """Redis's clock, ``TIME``: (seconds, microseconds)."""
    return CommandCall(("TIME",))


def redis_now_ms() -> int:
    seconds, microseconds = inventory_redis().time()
    return int(seconds) * 1000 + int(microseconds) // 1000
