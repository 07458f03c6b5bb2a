"""Per-process memory the hot path keeps (identities, sale meta, sold-out markers), and one
way to forget all of it.

A module that remembers something per process registers how to forget it; tests and an
operator's mass revocation call ``forget_process_state()`` instead of reaching into private
tables.
"""

from __future__ import annotations

import os
from collections.abc import Callable

_forgetters: list[Callable[[], None]] = []
_pid = [os.getpid()]


def _forked() -> None:
    _pid[0] = os.getpid()


os.register_at_fork(after_in_child=_forked)


def current_pid() -> int:
    """This process's id without a system call per ask (the hot path asks on every request
    whether its threads belong to this process or to the one it was forked from)."""
    return _pid[0]


def forgets_process_state(forget: Callable[[], None]) -> Callable[[], None]:
    """Register ``forget`` (usable as a decorator)."""
    _forgetters.append(forget)
    return forget


def forget_process_state() -> None:
    """Drop everything this process remembers between requests."""
    for forget in _forgetters:
        forget()
