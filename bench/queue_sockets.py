"""The waiting room's broadcast, heard from the client side: scenario 9's crowd processes
(``bench/wscrowd.py``), each socket listening for the ``queue`` message instead of
``sale_started``.

Every ``queue`` message a socket hears while a round is armed is stamped (``time.time()``)
with its ``served`` value: the ws process sends one message a second to every socket of the
sale, the same bytes to each, so the coordinator (``bench/queue_line.py``) groups the stamps
by ``served`` to get, per broadcast, how many sockets heard it and when the first and the
last did. Imports nothing from Django (the processes are spawned).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any

from .wscrowd import Crowd, CrowdState, SaleListener

QUEUE = b'"type":"queue"'
SERVED = re.compile(rb'"served":(\d+)')


@dataclass
class LineCrowdState(CrowdState):
    heard: list[tuple[int, float]] = field(default_factory=list)
    """(served, arrival) of every ``queue`` message heard in the armed round."""


class LineListener(SaleListener):
    """One page of a queue-mode sale, listening for the serving counter."""

    __slots__ = ()

    def _text(self, payload: bytes) -> None:
        if not self.hello.done():
            super()._text(payload)
            return
        crowd = self.crowd
        if crowd.round_open and QUEUE in payload:
            arrived = time.time()
            found = SERVED.search(payload)
            if found is not None:
                crowd.heard.append((int(found[1]), arrived))  # type: ignore[attr-defined]


class LineCrowd(Crowd):
    """A client process's sockets to a queue-mode sale: ``arm`` opens a round, ``collect``
    waits until its deadline and hands over every (served, arrival) heard in it."""

    listener_class = LineListener

    def __init__(self, source_address: str) -> None:
        super().__init__(source_address)
        self.state = LineCrowdState()

    def arm(self) -> None:
        state = self.state
        assert isinstance(state, LineCrowdState)
        state.heard = []
        state.round_open = True

    async def collect(self, deadline: float) -> dict[str, Any]:
        state = self.state
        assert isinstance(state, LineCrowdState)
        await asyncio.sleep(max(0.0, deadline - time.time()))
        state.round_open = False
        return {
            "heard": list(state.heard),
            "held": state.held,
            "failures": dict(state.failures),
            "closed_by_server": dict(state.closed_by_server),
        }
