"""The waiting room in ``make bench`` (issue 22, "Measured in make bench"): ``--only queue``.

Every sale here is a queue-mode sale (``admission`` ``queue``, a fixed serving rate), made
and loaded through the application's services, on the run's stack. In order:

1. **A join** (``POST /api/sales/<id>/queue/``, proof of work at the run's difficulty, each
   line a different shopper: 201 every time) at 100 connections, closed loop as the other
   rows: its throughput over the control's (target >= 0.5x).
2. **A place read** (``GET`` on the same path with the shopper's pass in ``Queue-Pass``, the
   way a page polls: answered by the web process alone) at 100 connections, the joiners of 1
   cycled (target >= 0.9x the control).
3. **A stampede of joins**: 100,000 shoppers (2,000 in ``--quick``), each joining once, over
   1,000 connections (100). Checked in Redis after the run: every join answered 201, the
   line holds one place per joiner, numbered 1..N without a gap or a repeat; Redis's
   commands per join (``total_commands_processed`` and ``INFO commandstats`` over the run,
   less what the idle stack runs in the same time). Then **admissions in number order**:
   while the counter moves, sweeps of place reads by ``join.lua`` itself (the script that
   decides) for a sample around the counter, in random order, one call at a time: in the
   order Redis ran them, the counter never goes back, a place is admitted exactly when its
   number is at or below the counter, and no place is seen waiting after a later number
   was seen admitted.
4. **ETA accuracy**: a fresh sale serving 10 a second; 400 shoppers (60 in ``--quick``) join
   over HTTP as a Poisson stream at twice the serving rate, so a line builds and then drains
   over ~40 s (~6 s). Each join's answer gives the ETA; the moment the shopper is let
   in is when Redis's counter reaches their number, read every ``POLL_S`` by ``join.lua``
   (with its Redis clock). Per shopper who had to wait: error = |actual wait - ETA|, and
   that over the wait; p50 and p90 (target: p90 at most 20% of the wait).
5. **The serving counter's broadcast**: 15,000 sockets (300) to the stampede's sale on one
   ws process (scenario 9's crowd processes, ``bench/queue_sockets.py``), while its counter
   moves at ``STAMPEDE_RATE`` a second through the line the stampede left. Each socket
   stamps every ``queue`` message with its ``served``; the counter reached that number at
   an instant the line's state in Redis gives exactly (``served`` + rate x time, the rule
   ``sales.line.served_at`` and the ws process both follow), so each broadcast's delay is
   arrival minus that instant: it includes the time from the counter's move to the ws
   process's message (under ``1 / STAMPEDE_RATE``: the message's ``served`` is the floor).
   Target: every socket hears each broadcast within 1 s, at 15,000 sockets.

The rows of 1-3 are ``Scenarios`` rows (ratios to the control and the ceiling, the table, the
chart); the rest goes to the results' ``waiting_room`` and the targets.
"""

from __future__ import annotations

import http.client
import itertools
import json
import math
import random
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from django.conf import settings

from core.redis_store import inventory_redis
from core.steps import run_step
from sales import keys
from sales.inventory import JoinAnswer, JoinStatus, join_call
from sales.models import Admission, FlashSale
from sales.passes import pass_issue
from wsdoor.hub import sockets_allowed

from . import data
from .cpu import CpuMeter
from .loadgen import LoadResult, wrk_run
from .queue_sockets import LineCrowd
from .scenarios import HUGE_STOCK, SCENARIO_TITLES, WARMUP_LINES_PER_SECOND, RunResult, Scenarios
from .stack import BenchStack
from .websocket import (
    OPEN_TIMEOUT_S,
    SOCKETS_PER_CLIENT_PROCESS,
    TARGET_SOCKETS,
    WS_BENCH_ENV,
    open_file_limit,
    tree_cpu_seconds,
)
from .wscrowd import crowd_started

SCENARIO_TITLES.setdefault("queue_join", "22 waiting room: join (POST queue/)")
SCENARIO_TITLES.setdefault("queue_place", "22 waiting room: place read, with pass")
SCENARIO_TITLES.setdefault("queue_stampede", "22 waiting room: stampede of joins")

JOIN_RATIO = 0.5
PLACE_RATIO = 0.9
ETA_P90_SHARE = 0.2
BROADCAST_LAST_MS = 1000.0
STAMPEDE_TARGET = 100_000
LEVEL = 100
JOIN_SERVING_RATE = 1000
STAMPEDE_RATE = 500
"""The stampede's sale serves this many a second: its line (100,000) then outlasts the
broadcast's measurement, and a broadcast's ``served`` pins its instant to 2 ms."""
PLACE_SHOPPERS = 5000
POLL_S = 0.005
LISTEN_S = 3.4
"""Each socket listens this long: three broadcasts (one a second)."""


@dataclass(frozen=True)
class Sizes:
    stampede_joins: int
    stampede_connections: int
    stampede_rate: int
    sweeps: int
    sweep_sample: int
    eta_shoppers: int
    eta_rate: int
    sockets: int

    @classmethod
    def of(cls, *, quick: bool) -> Sizes:
        if quick:
            return cls(2000, 100, 100, 3, 200, 60, 10, 300)
        return cls(STAMPEDE_TARGET, 1000, STAMPEDE_RATE, 6, 2000, 400, 10, TARGET_SOCKETS)


def queue_sale_open(*, stock: int, pow_difficulty: int, serving_rate: int) -> FlashSale:
    """A queue-mode sale open since a second ago, for two hours, loaded into Redis (with the line)."""
    return data.sale_open(
        stock=stock, pow_difficulty=pow_difficulty, admission=Admission.QUEUE, serving_rate=serving_rate
    )


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)] if ordered else 0.0


def _spread(values: Sequence[float], digits: int) -> dict[str, float]:
    return {
        "p50": round(_percentile(values, 0.5), digits),
        "p90": round(_percentile(values, 0.9), digits),
        "max": round(max(values, default=0.0), digits),
    }


def _commandstats(client: redis.Redis) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in client.info("commandstats").items()}


def _total_commands(client: redis.Redis) -> int:
    return int(client.info("stats")["total_commands_processed"])


class WaitingRoomBench:
    """The waiting room's measurements on one stack, after the control ran."""

    def __init__(self, scenarios: Scenarios, *, log: Callable[[str], None]) -> None:
        self.scenarios = scenarios
        self.stack: BenchStack = scenarios.stack
        self.plan = scenarios.plan
        self.sizes = Sizes.of(quick=self.plan.quick)
        self.log = log
        self.redis = inventory_redis()
        assert self.stack.redis is not None
        self.admin = redis.Redis.from_url(self.stack.redis.url, decode_responses=True)
        self.level = LEVEL if LEVEL in self.plan.connections else self.plan.connections[-1]

    # --- plumbing ---------------------------------------------------------------------------

    def _wrk(
        self, *, method: str, path: str, connections: int, duration_s: int, lines: Path
    ) -> tuple[LoadResult, dict[str, float]]:
        meter = self.scenarios.meter
        before = meter.snapshot()
        result = wrk_run(
            base_url=self.stack.web_url,
            path=path,
            connections=connections,
            duration_s=duration_s,
            method=method,
            lines=lines,
        )
        after = meter.snapshot()
        return result, CpuMeter.spent(before, after, wall_s=result.wall_s, loadgen_s=result.loadgen_cpu_s)

    def _line(self, sale_id: int) -> dict[int, int]:
        """The sale's line in Redis: user id -> number."""
        return {int(user): int(number) for user, number in self.redis.hgetall(keys.line_key(sale_id)).items()}

    def _line_checks(self, sale_id: int, *, answered: int, in_flight: int = 0) -> dict[str, Any]:
        """One place per answered join, numbered 1..N with no gap and no repeat. A closed-loop
        run that ended by its duration left up to ``in_flight`` joins unanswered (wrk stopped
        reading): the server may have placed those too."""
        numbers = list(self._line(sale_id).values())
        joined = int(self.redis.hget(keys.line_state_key(sale_id), "joined") or 0)
        unique = len(set(numbers)) == len(numbers)
        gap_free = sorted(numbers) == list(range(1, len(numbers) + 1))
        checks = {
            "sale_id": sale_id,
            "joins_answered_201": answered,
            "places": len(numbers),
            "joined": joined,
            "numbers_unique": unique,
            "numbers_gap_free": gap_free,
            "joins_in_flight_at_the_end": in_flight,
            "one_place_per_answer": len(numbers) == joined and answered <= joined <= answered + in_flight,
        }
        checks["holds"] = bool(unique and gap_free and checks["one_place_per_answer"])
        return checks

    def _place(self, sale_id: int, user_id: int) -> JoinAnswer:
        """The shopper's place as ``join.lua`` says (its Redis clock in ``now_ms``)."""
        call = join_call(
            sale_id=sale_id,
            user_id=user_id,
            read_only=True,
            turn_seconds=settings.FLASHSALE_QUEUE_TURN_SECONDS,
            crowd_interval_ms=settings.FLASHSALE_CROWD_INTERVAL_MS,
        )
        return JoinAnswer.from_reply(run_step(self.redis, call))

    # --- 1. the join, 2. the place read ----------------------------------------------------

    def join(self) -> tuple[RunResult, FlashSale]:
        plan, pool, connections = self.plan, self.scenarios.pool, self.level
        sale = queue_sale_open(stock=HUGE_STOCK, pow_difficulty=plan.difficulty, serving_rate=JOIN_SERVING_RATE)
        path = f"/api/sales/{sale.pk}/queue/"
        warm_count = WARMUP_LINES_PER_SECOND * plan.warmup_s
        warm_shoppers = pool.ensure(warm_count)
        warm_file = data.request_file_write(
            self.scenarios._file(f"queue-join-{connections}-warm"),
            warm_shoppers,
            data.presolved_bodies(sale=sale, shoppers=warm_shoppers),
        )
        warmup, _ = self._wrk(
            method="POST", path=path, connections=connections, duration_s=plan.warmup_s, lines=warm_file
        )
        shoppers = pool.ensure(warm_count + self.scenarios._budget(warmup))[warm_count:]
        timed_file = data.request_file_write(
            self.scenarios._file(f"queue-join-{connections}"),
            shoppers,
            data.presolved_bodies(sale=sale, shoppers=shoppers),
        )
        result, cores = self._wrk(
            method="POST", path=path, connections=connections, duration_s=plan.duration_s, lines=timed_file
        )
        answered = result.statuses.get(201, 0) + warmup.statuses.get(201, 0)
        time.sleep(0.5)  # the joins wrk left in flight are answered by now
        checks = self._line_checks(
            sale.pk, answered=answered, in_flight=result.in_flight_at_end + warmup.in_flight_at_end
        )
        run = self.scenarios._record(
            "queue_join",
            result,
            cores,
            expected={201},
            checks=checks,
            notes=[f"serving rate {JOIN_SERVING_RATE}/s; proof of work at {plan.difficulty} bits, solved ahead"],
        )
        return run, sale

    def place(self, sale: FlashSale) -> RunResult:
        """Place reads with the pass, by the joiners of ``join``'s sale, cycled."""
        connections = self.level
        tokens = {shopper.user_id: shopper.token for shopper in self.scenarios.pool.shoppers}
        line = sorted(self._line(sale.pk).items(), key=lambda item: item[1])[:PLACE_SHOPPERS]
        joined_before = int(self.redis.hget(keys.line_state_key(sale.pk), "joined") or 0)
        rows = [
            f"{tokens[user]}\t\tQueue-Pass: {pass_issue(sale_id=sale.pk, user_id=user, number=number)}\n"
            for user, number in line
        ]
        needed = self.scenarios._lines_for_cycles(connections)
        lines = self.scenarios._file(f"queue-place-{connections}")
        with lines.open("w", encoding="utf-8") as out:
            out.writelines(rows * max(1, math.ceil(needed / len(rows))))
        path = f"/api/sales/{sale.pk}/queue/"
        self._wrk(method="GET", path=path, connections=connections, duration_s=self.plan.warmup_s, lines=lines)
        result, cores = self._wrk(
            method="GET", path=path, connections=connections, duration_s=self.plan.duration_s, lines=lines
        )
        joined_after = int(self.redis.hget(keys.line_state_key(sale.pk), "joined") or 0)
        checks = {
            "sale_id": sale.pk,
            "joined_before": joined_before,
            "joined_after": joined_after,
            "holds": joined_before == joined_after and len(self._line(sale.pk)) == joined_after,
        }
        return self.scenarios._record(
            "queue_place",
            result,
            cores,
            expected={200},
            checks=checks,
            notes=[f"GET with the pass in Queue-Pass; {len(rows):,} shoppers of the join row's line, cycled"],
        )

    # --- 3. the stampede ------------------------------------------------------------------

    def stampede(self) -> tuple[RunResult, FlashSale, dict[str, Any]]:
        sizes, plan = self.sizes, self.plan
        sale = queue_sale_open(stock=HUGE_STOCK, pow_difficulty=plan.difficulty, serving_rate=sizes.stampede_rate)
        made = time.monotonic()
        shoppers = self.scenarios.pool.ensure(sizes.stampede_joins)
        shoppers_s = time.monotonic() - made
        made = time.monotonic()
        lines = data.request_file_write(
            self.scenarios._file("queue-stampede"), shoppers, data.presolved_bodies(sale=sale, shoppers=shoppers)
        )
        presolve_s = time.monotonic() - made
        self.log(
            f"  {sizes.stampede_joins:,} shoppers ready ({shoppers_s:.1f} s to make the missing ones), "
            f"their challenges issued and solved in {presolve_s:.1f} s"
        )
        idle_s = 2.0
        idle_before = _total_commands(self.admin)
        time.sleep(idle_s)
        background_per_s = (_total_commands(self.admin) - idle_before) / idle_s
        stats_before, total_before = _commandstats(self.admin), _total_commands(self.admin)
        result, cores = self._wrk(
            method="POST",
            path=f"/api/sales/{sale.pk}/queue/",
            connections=sizes.stampede_connections,
            duration_s=180 if not plan.quick else 30,
            lines=lines,
        )
        total = _total_commands(self.admin) - total_before
        stats_after = _commandstats(self.admin)
        joins = result.statuses.get(201, 0)
        deltas = {name: calls - stats_before.get(name, 0) for name, calls in stats_after.items()}
        per_command = {
            name: round(calls / joins, 3)
            for name, calls in sorted(deltas.items(), key=lambda item: -item[1])
            if calls > 0 and joins
        }
        background = background_per_s * result.wall_s
        checks = self._line_checks(sale.pk, answered=joins)
        every_answered = (
            joins == sizes.stampede_joins == sum(result.statuses.values()) and result.unexpected({201}) == 0
        )
        commands = {
            "total": total,
            "per_join": round(total / joins, 2) if joins else None,
            "background_per_s": round(background_per_s, 1),
            "per_join_less_background": round((total - background) / joins, 2) if joins else None,
            "calls_per_join_by_command": dict(list(per_command.items())[:12]),
        }
        checks |= {"every_join_answered_a_place": every_answered, "redis_commands": commands}
        checks["holds"] = bool(checks["holds"] and every_answered)
        run = self.scenarios._record(
            "queue_stampede",
            result,
            cores,
            expected={201},
            checks=checks,
            notes=[
                f"{sizes.stampede_joins:,} shoppers joining once each over {sizes.stampede_connections:,} "
                f"connections; serving rate {sizes.stampede_rate}/s"
            ],
        )
        self.log(
            f"  places {checks['places']:,}, unique {checks['numbers_unique']}, gap-free "
            f"{checks['numbers_gap_free']}; Redis commands per join {commands['per_join']} "
            f"({commands['per_join_less_background']} less the idle stack's)"
        )
        made_in = {"shoppers_s": round(shoppers_s, 1), "challenges_s": round(presolve_s, 1)}
        return run, sale, made_in

    def admission_order(self, sale: FlashSale) -> dict[str, Any]:
        """Sweeps of place reads (``join.lua``, one call at a time, random order) of a sample
        around the moving counter: in the order Redis ran them, is everyone let in by number?"""
        sizes = self.sizes
        line = self._line(sale.pk)
        by_number = {number: user for user, number in line.items()}
        served_now = self._place(sale.pk, next(iter(line))).served
        span = sizes.stampede_rate * sizes.sweeps * 1.0
        front = [by_number[n] for n in range(max(1, math.floor(served_now)), len(line) + 1) if n in by_number][
            : math.ceil(span)
        ]
        rng = random.Random(22)
        picked = rng.sample(front, min(len(front), sizes.sweep_sample * 3 // 4))
        chosen = set(picked)
        rest = [user for user in line if user not in chosen]
        picked += rng.sample(rest, min(len(rest), sizes.sweep_sample - len(picked)))
        replies: list[JoinAnswer] = []
        for _ in range(sizes.sweeps):
            rng.shuffle(picked)
            replies.extend(self._place(sale.pk, user) for user in picked)
            time.sleep(0.5)
        let_in = {JoinStatus.ADMITTED, JoinStatus.TURN_PASSED}
        served_back = sum(later.served < earlier.served for earlier, later in itertools.pairwise(replies))
        wrong_status = sum((reply.status in let_in) != (reply.position <= reply.served) for reply in replies)
        out_of_order = 0
        highest_in = 0
        seen_waiting: set[int] = set()
        crossed = 0
        for reply in replies:
            if reply.status in let_in:
                highest_in = max(highest_in, reply.number)
                if reply.number in seen_waiting:
                    crossed += 1
                    seen_waiting.discard(reply.number)
            elif reply.status is JoinStatus.WAITING:
                seen_waiting.add(reply.number)
                out_of_order += reply.number < highest_in
        other = sum(reply.status not in let_in | {JoinStatus.WAITING} for reply in replies)
        result = {
            "reads": len(replies),
            "sweeps": sizes.sweeps,
            "sample": len(picked),
            "counter_from": math.floor(replies[0].served) if replies else 0,
            "counter_to": math.floor(replies[-1].served) if replies else 0,
            "seen_waiting_then_admitted": crossed,
            "counter_went_back": served_back,
            "status_not_by_counter": wrong_status,
            "waiting_behind_a_later_admitted": out_of_order,
            "other_answers": other,
        }
        result["holds"] = bool(crossed > 0 and not (served_back or wrong_status or out_of_order or other))
        self.log(
            f"  admissions in number order: {len(replies):,} place reads in {sizes.sweeps} sweeps while the counter "
            f"moved {result['counter_from']:,} -> {result['counter_to']:,}; {crossed} seen waiting then let in; "
            f"out of order {out_of_order}, counter back {served_back}, status off the counter {wrong_status}"
        )
        return result

    # --- 4. ETA accuracy ------------------------------------------------------------------

    def eta(self) -> dict[str, Any]:
        sizes = self.sizes
        rate = sizes.eta_rate
        sale = queue_sale_open(stock=HUGE_STOCK, pow_difficulty=0, serving_rate=rate)
        shoppers = self.scenarios.pool.ensure(sizes.eta_shoppers)
        arrival_rate = 2.0 * rate
        rng = random.Random(2222)
        assert self.stack.web is not None
        connection = http.client.HTTPConnection("127.0.0.1", self.stack.web.port, timeout=10)
        path = f"/api/sales/{sale.pk}/queue/"
        joins: list[dict[str, Any]] = []
        samples: list[tuple[int, float]] = []
        stop = threading.Event()

        def poll(user_id: int) -> None:
            while not stop.is_set():
                answer = self._place(sale.pk, user_id)
                samples.append((answer.now_ms, answer.served))
                if answer.served >= len(shoppers):
                    return
                stop.wait(POLL_S)

        poller: threading.Thread | None = None
        due = time.time()
        try:
            for shopper in shoppers:
                due += rng.expovariate(arrival_rate)
                time.sleep(max(0.0, due - time.time()))
                sent = time.time()
                connection.request(
                    "POST",
                    path,
                    body=b"",
                    headers={"Authorization": f"Token {shopper.token}", "Content-Type": "application/json"},
                )
                response = connection.getresponse()
                body = json.loads(response.read())
                answered = time.time()
                if response.status != 201:
                    raise RuntimeError(f"the ETA scenario's join answered {response.status}: {body}")
                joins.append({"sent": sent, "answered": answered, **body})
                if poller is None:
                    poller = threading.Thread(target=poll, args=(shopper.user_id,), daemon=True)
                    poller.start()
            assert poller is not None
            poller.join(timeout=len(shoppers) / rate + 30)
        finally:
            stop.set()
            connection.close()
        let_in_at: dict[int, float] = {}
        cursor = 0
        for number in range(1, len(shoppers) + 1):
            while cursor < len(samples) and samples[cursor][1] < number:
                cursor += 1
            if cursor < len(samples):
                let_in_at[number] = samples[cursor][0] / 1000
        waited = [join for join in joins if join["status"] == "waiting" and join["number"] in let_in_at]
        walked_in = sum(join["status"] == "admitted" for join in joins)
        errors, shares, waits, signed = [], [], [], []
        by_rate: dict[str, list[float]] = {}
        shoppers_seen = []
        first_told = min((join["answered"] for join in joins), default=0.0)
        for join in waited:
            # Told at the join's Redis instant (its receipt's time), else when the answer came.
            told_at = join["receipt"]["time_ms"] / 1000 if "receipt" in join else join["answered"]
            wait = let_in_at[join["number"]] - told_at
            told = join["eta_seconds"] or 0.0
            errors.append(abs(wait - told))
            signed.append(told - wait)
            waits.append(wait)
            shares.append(abs(wait - told) / max(wait, 0.001))
            by_rate.setdefault(f"{round(join['rate_per_second'], 1):g}", []).append(shares[-1])
            shoppers_seen.append(
                [join["number"], round(told_at - first_told, 3), told, round(wait, 3), join["rate_per_second"]]
            )
        gaps = [later[0] - earlier[0] for earlier, later in itertools.pairwise(samples)]
        result: dict[str, Any] = {
            "sale_id": sale.pk,
            "serving_rate": rate,
            "arrival_rate": arrival_rate,
            "shoppers": len(shoppers),
            "joined": len(joins),
            "let_in": len(let_in_at),
            "admitted_at_join": walked_in,
            "waited": len(waited),
            "poll_interval_ms_p50": round(statistics.median(gaps), 1) if gaps else None,
            "wait_s": _spread(waits, 2),
            "error_s": _spread(errors, 3),
            "error_share_of_wait": _spread(shares, 4),
            "eta_minus_wait_mean_s": round(statistics.fmean(signed), 3) if signed else None,
            "by_rate_told": {
                told: {
                    "shoppers": len(values),
                    "error_share_p50": round(_percentile(values, 0.5), 4),
                    "error_share_p90": round(_percentile(values, 0.9), 4),
                }
                for told, values in sorted(by_rate.items())
            },
            "waited_detail": {
                "fields": ["number", "told_at_s", "eta_s", "wait_s", "rate_told"],
                "rows": shoppers_seen,
            },
            "let_in_in_number_order": all(
                let_in_at[n] <= let_in_at[n + 1] for n in range(1, len(let_in_at)) if n + 1 in let_in_at
            ),
        }
        result["every_shopper_let_in"] = len(let_in_at) == len(shoppers) == len(joins)
        self.log(
            f"  ETA at {rate}/s: {len(waited)} of {len(joins)} waited (waits p50 {result['wait_s']['p50']} s, max "
            f"{result['wait_s']['max']} s); error p50 {result['error_s']['p50']} s / p90 {result['error_s']['p90']} s, "
            f"p90 {100 * result['error_share_of_wait']['p90']:.1f}% of the wait"
        )
        return result

    # --- 5. the broadcast -----------------------------------------------------------------

    def broadcast(self, sale: FlashSale) -> dict[str, Any]:
        sizes = self.sizes
        ws = self.stack.start_ws(env=WS_BENCH_ENV)
        try:
            capacity = sockets_allowed(open_file_limit(ws.pid))
            asked = min(sizes.sockets, capacity)
            processes = max(2, math.ceil(asked / SOCKETS_PER_CLIENT_PROCESS))
            crowds = crowd_started(processes, LineCrowd)
            try:
                began = time.perf_counter()
                shares = [asked // processes + (index < asked % processes) for index in range(processes)]
                for crowd, share in zip(crowds, shares, strict=True):
                    crowd.ask(
                        "open",
                        host="127.0.0.1",
                        port=ws.port,
                        path=f"/ws/sales/{sale.pk}/",
                        origin=f"http://127.0.0.1:{ws.port}",
                        count=share,
                    )
                opened = [crowd.answer(OPEN_TIMEOUT_S) for crowd in crowds]
                open_s = time.perf_counter() - began
                for crowd in crowds:
                    crowd.ask("arm")
                    crowd.answer(30.0)
                armed_at = time.time()
                deadline = armed_at + LISTEN_S
                cpu_before = tree_cpu_seconds(ws.pid)
                for crowd in crowds:
                    crowd.ask("collect", deadline=deadline)
                replies = [crowd.answer(LISTEN_S + 60.0) for crowd in crowds]
                cpu_round = tree_cpu_seconds(ws.pid) - cpu_before
            finally:
                for crowd in crowds:
                    crowd.stop()
        finally:
            ws.stop()
        held = sum(reply["held"] for reply in replies)
        state = self.redis.hmget(keys.line_state_key(sale.pk), "served", "at_ms", "joined")
        served0, at_ms, joined = float(state[0] or 0), int(state[1] or 0), int(state[2] or 0)
        rate = float(sizes.stampede_rate)
        heard: dict[int, list[float]] = {}
        for reply in replies:
            for served, arrival in reply["heard"]:
                heard.setdefault(int(served), []).append(arrival)
        rounds = []
        for served, arrivals in sorted(heard.items()):
            first = min(arrivals)
            if first < armed_at or first > deadline - 1.0 or served >= joined:
                continue  # straddles arming or the deadline, or the line ran out (the counter stops there)
            counter_at = (at_ms + (served - served0) / rate * 1000) / 1000
            delays = [(arrival - counter_at) * 1000 for arrival in arrivals]
            rounds.append(
                {
                    "served": served,
                    "heard": len(arrivals),
                    "first_ms": round(min(delays), 1),
                    "p50_ms": round(_percentile(delays, 0.5), 1),
                    "last_ms": round(max(delays), 1),
                    "spread_ms": round((max(arrivals) - first) * 1000, 1),
                }
            )
        result = {
            "sale_id": sale.pk,
            "sockets_asked": asked,
            "sockets_held": held,
            "open_s": round(open_s, 1),
            "capacity": capacity,
            "serving_rate": rate,
            "rounds": rounds,
            "every_socket_heard_every_round": bool(rounds) and all(r["heard"] == held for r in rounds),
            "last_ms": max((r["last_ms"] for r in rounds), default=None),
            "ws_cpu_s": round(cpu_round, 2),
            "failures": {k: v for reply in opened + replies for k, v in reply.get("failures", {}).items()},
        }
        self.log(
            f"  queue broadcast: {held:,} of {asked:,} sockets held (opened in {open_s:.1f} s); "
            + "; ".join(
                f"served {r['served']:,} heard by {r['heard']:,}: first {r['first_ms']:.0f} / p50 {r['p50_ms']:.0f} / "
                f"last {r['last_ms']:.0f} ms after the counter reached it"
                for r in rounds
            )
        )
        return result

    def run(self) -> dict[str, Any]:
        self.log(f"the waiting room: a join @{self.level}, then a place read @{self.level}")
        _, join_sale = self.join()
        self.place(join_sale)
        self.log(
            f"the waiting room: a stampede of {self.sizes.stampede_joins:,} joins over "
            f"{self.sizes.stampede_connections:,} connections"
        )
        stampede_run, stampede_sale, made_in = self.stampede()
        order = self.admission_order(stampede_sale)
        stampede_run.checks["admission_order"] = order
        stampede_run.checks["holds"] = bool(stampede_run.checks["holds"] and order["holds"])
        self.log(f"the waiting room: {self.sizes.sockets:,} sockets hear the serving counter")
        broadcast = self.broadcast(stampede_sale)
        self.log(f"the waiting room: ETA accuracy at a steady {self.sizes.eta_rate}/s")
        eta = self.eta()
        self.admin.close()
        return {"stampede_made_in": made_in, "admission_order": order, "eta": eta, "broadcast": broadcast}


def waiting_room_scenario(scenarios: Scenarios, *, log: Callable[[str], None]) -> dict[str, Any]:
    return WaitingRoomBench(scenarios, log=log).run()


# --- the targets and the table --------------------------------------------------------------


def _saturated(runs: Sequence[RunResult], scenario: str, connections: int | None = None) -> RunResult | None:
    return next(
        (
            run
            for run in runs
            if run.scenario == scenario
            and run.load == "saturated"
            and (connections is None or run.connections == connections)
        ),
        None,
    )


def _ratio(runs: Sequence[RunResult], scenario: str, floor: float, label: str) -> dict[str, Any]:
    name = f"waiting room (issue 22): {label} >= {floor}x control throughput @{LEVEL} connections"
    run, control = _saturated(runs, scenario, LEVEL), _saturated(runs, "control", LEVEL)
    if run is None or control is None or not control.rps:
        return {"target": name, "measured": "not measured", "met": None}
    ratio = run.rps / control.rps
    return {
        "target": name,
        "measured": f"{ratio:.2f}x ({run.rps:,.0f} vs {control.rps:,.0f} req/s; errors {run.errors})",
        "met": ratio >= floor and run.errors == 0 and run.checks_hold,
    }


def targets(runs: Sequence[RunResult], waiting_room: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Issue 22's targets from this run."""
    checks = [
        _ratio(runs, "queue_join", JOIN_RATIO, "a join"),
        _ratio(runs, "queue_place", PLACE_RATIO, "a place read"),
    ]
    room = waiting_room or {}
    name = (
        f"waiting room (issue 22): a stampede of {STAMPEDE_TARGET:,} joins, every one answered with a place, "
        "numbers unique and gap-free, admitted in number order, Redis commands per join reported"
    )
    stampede = _saturated(runs, "queue_stampede")
    if stampede is None:
        checks.append({"target": name, "measured": "not measured", "met": None})
    else:
        c = stampede.checks
        order = c.get("admission_order", {})
        commands = c.get("redis_commands", {})
        answered = sum(stampede.statuses.values())
        measured = (
            f"{answered:,} joins over {stampede.connections:,} connections at {stampede.rps:,.0f}/s, "
            f"{stampede.statuses.get('201', 0):,} answered 201, errors {stampede.errors}; "
            f"{c.get('places', 0):,} places, unique {c.get('numbers_unique')}, gap-free {c.get('numbers_gap_free')}; "
            f"order: {order.get('reads', 0):,} reads, {order.get('seen_waiting_then_admitted', 0)} let in after "
            f"waiting, {order.get('waiting_behind_a_later_admitted', '?')} out of order; Redis: "
            f"{commands.get('calls_per_join_by_command', {}).get('evalsha')} EVALSHA and "
            f"{commands.get('per_join')} commands in all per join, the script's own counted "
            f"({commands.get('per_join_less_background')} less the idle stack's)"
        )
        met = stampede.checks_hold and stampede.errors == 0 if answered >= STAMPEDE_TARGET else None
        checks.append({"target": name, "measured": measured, "met": met})
    name = f"waiting room (issue 22): ETA error p90 <= {ETA_P90_SHARE:.0%} of the wait, steady serving rate"
    eta = room.get("eta")
    if not eta or not eta.get("waited"):
        checks.append({"target": name, "measured": "not measured", "met": None})
    else:
        share = eta["error_share_of_wait"]
        checks.append(
            {
                "target": name,
                "measured": (
                    f"p50 {100 * share['p50']:.1f}%, p90 {100 * share['p90']:.1f}% of the wait "
                    f"(error p50 {eta['error_s']['p50']} s, p90 {eta['error_s']['p90']} s; waits p50 "
                    f"{eta['wait_s']['p50']} s, max {eta['wait_s']['max']} s; {eta['waited']} of {eta['joined']} "
                    f"waited at {eta['serving_rate']}/s)"
                ),
                "met": share["p90"] <= ETA_P90_SHARE and eta["every_shopper_let_in"],
            }
        )
    name = (
        f"waiting room (issue 22): the serving counter's broadcast reaches {TARGET_SOCKETS:,} sockets on one ws "
        f"process within {BROADCAST_LAST_MS:.0f} ms"
    )
    broadcast = room.get("broadcast")
    if not broadcast or not broadcast.get("rounds"):
        checks.append({"target": name, "measured": "not measured", "met": None})
    else:
        held = broadcast["sockets_held"]
        measured = (
            f"{held:,} sockets; {len(broadcast['rounds'])} broadcasts, heard by every socket: "
            f"{broadcast['every_socket_heard_every_round']}; last socket {broadcast['last_ms']} ms after the counter "
            "moved (worst broadcast)"
        )
        met = (
            broadcast["every_socket_heard_every_round"] and broadcast["last_ms"] <= BROADCAST_LAST_MS
            if broadcast["sockets_asked"] >= TARGET_SOCKETS
            else None
        )
        checks.append({"target": name, "measured": measured, "met": met})
    return checks


def describe(room: dict[str, Any]) -> list[str]:
    """The table's lines for the waiting room (the rows above carry the join, the place read
    and the stampede)."""
    lines = []
    order = room.get("admission_order")
    if order:
        lines.append(
            f"22 waiting room, admissions in number order: {order['reads']:,} place reads (join.lua) in "
            f"{order['sweeps']} sweeps while the counter moved {order['counter_from']:,} -> {order['counter_to']:,}: "
            f"{order['seen_waiting_then_admitted']} seen waiting then let in, "
            f"{order['waiting_behind_a_later_admitted']} out of order"
        )
    eta = room.get("eta")
    if eta:
        lines.append(
            f"22 waiting room, ETA at a steady {eta['serving_rate']}/s ({eta['shoppers']} shoppers arriving at "
            f"{eta['arrival_rate']:.0f}/s): {eta['waited']} waited (waits p50 {eta['wait_s']['p50']} s, max "
            f"{eta['wait_s']['max']} s); error p50 {eta['error_s']['p50']} s / p90 {eta['error_s']['p90']} s, "
            f"{100 * eta['error_share_of_wait']['p50']:.1f}% / {100 * eta['error_share_of_wait']['p90']:.1f}% "
            "of the wait; by the rate the ETA was told at: "
            + ", ".join(
                f"{told}/s x {row['shoppers']} (p90 {100 * row['error_share_p90']:.1f}%)"
                for told, row in eta.get("by_rate_told", {}).items()
            )
        )
    broadcast = room.get("broadcast")
    if broadcast:
        lines.append(
            f"22 waiting room, the queue broadcast: {broadcast['sockets_held']:,} of {broadcast['sockets_asked']:,} "
            "sockets on one ws process; from the counter reaching `served` to the first / p50 / last socket:"
        )
        lines.extend(
            f"   served {r['served']:>7,}: heard by {r['heard']:,}, {r['first_ms']:.0f} / {r['p50_ms']:.0f} / "
            f"{r['last_ms']:.0f} ms"
            for r in broadcast["rounds"]
        )
    return lines
