"""Per-process memory the hot path keeps (identities, sale meta, sold-out markers), and one
way to forget all of it.

A module that remembers something per process registers how to forget it; tests and an
operator's mass revocation call ``forget_process_state()`` instead of reaching into private
tables.
"""

from __future__ import annotations

from collections.abc import Callable

_forgetters: list[Callable[[], None]] = []


def forgets_process_state(forget: Callable[[], None]) -> Callable[[], None]:
    """Register ``forget`` (usable as a decorator)."""
    _forgetters.append(forget)
    return forget


def forget_process_state() -> None:
    """Drop everything this process remembers between requests."""
    for forget in _forgetters:
        forget()
