"""How big a benchmark run is: the full run of ``make bench`` or the smoke run of ``--quick``.

Imports nothing from Django: the plan is made before the stack (and the settings) exist.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BenchPlan:
    quick: bool
    connections: tuple[int, ...]
    duration_s: int
    warmup_s: int
    difficulty: int
    seed_stock: int
    seed_users: int
    seed_per_user: int
    seed_connections: int
    ceiling_requests: int
    memory_buyers: int
    drain_timeout_s: float

    @classmethod
    def full(cls, *, difficulty: int = 8, connections: tuple[int, ...] = (10, 100, 1000)) -> BenchPlan:
        return cls(
            quick=False,
            connections=connections,
            duration_s=8,
            warmup_s=2,
            difficulty=difficulty,
            seed_stock=10,
            seed_users=10_000,
            seed_per_user=10,
            seed_connections=1000,
            ceiling_requests=300_000,
            memory_buyers=100_000,
            drain_timeout_s=120.0,
        )

    @classmethod
    def smoke(cls, *, difficulty: int = 8, connections: tuple[int, ...] = (100,)) -> BenchPlan:
        return cls(
            quick=True,
            connections=connections,
            duration_s=1,
            warmup_s=1,
            difficulty=difficulty,
            seed_stock=10,
            seed_users=500,
            seed_per_user=10,
            seed_connections=100,
            ceiling_requests=20_000,
            memory_buyers=10_000,
            drain_timeout_s=30.0,
        )
