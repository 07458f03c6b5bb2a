"""The local sold-out marker: a web process that saw a sale sell out answers ``SOLD_OUT``
for it without any network round trip, until a stock-return event says otherwise.

One daemon thread per process subscribes to ``flashsale_events``. A sale is marked only
while that subscription is live, since a process that cannot hear stock come back must not
keep saying "sold out"; when the subscription drops, every marker is dropped with it.

Races between a request marking a sale and the listener hearing a return are settled by the
Redis clock: every event carries its ``timestamp``, every sold-out answer the script's
``now_ms``; a marker older than the newest return heard is never set.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time

import redis

from core.process_state import forgets_process_state
from core.redis_store import inventory_redis

from . import keys

logger = logging.getLogger(__name__)


class SoldOutMarkers:
    def __init__(self) -> None:
        self._marked: dict[int, int] = {}  # sale id -> Redis ms when seen sold out
        self._returned: dict[int, int] = {}  # sale id -> Redis ms of the newest stock return
        self._lock = threading.Lock()
        self._listening = threading.Event()
        self._listener: threading.Thread | None = None
        self._listener_pid = 0
        self._generation = 0  # A listener whose generation is stale stops.
        self.events_heard = 0

    def is_sold_out(self, sale_id: int) -> bool:
        """The hot path's check: one dict lookup, no I/O."""
        return sale_id in self._marked

    def mark(self, sale_id: int, *, seen_at_ms: int) -> bool:
        """Remember that the sale had no stock at ``seen_at_ms``. Returns whether it did."""
        self._ensure_listener()
        if not self._listening.is_set():
            return False
        with self._lock:
            if self._returned.get(sale_id, -1) >= seen_at_ms:
                return False
            self._marked[sale_id] = max(seen_at_ms, self._marked.get(sale_id, 0))
        return True

    def heard(self, event: dict[str, object]) -> None:
        """Apply one event from ``flashsale_events`` (the listener calls this)."""
        self.events_heard += 1
        try:
            sale_id = int(event["sale_id"])  # type: ignore[call-overload]
            remaining = int(event["remaining"])  # type: ignore[call-overload]
            timestamp = int(event["timestamp"])  # type: ignore[call-overload]
        except (KeyError, TypeError, ValueError):
            return
        if remaining <= 0:
            return
        with self._lock:
            self._returned[sale_id] = max(timestamp, self._returned.get(sale_id, -1))
            marked_at = self._marked.get(sale_id)
            # A purchase in the same millisecond as the sell-out also clears it: harmless,
            # the next request asks Redis and marks again.
            if marked_at is not None and timestamp >= marked_at:
                del self._marked[sale_id]

    def forget_all(self) -> None:
        with self._lock:
            self._marked.clear()

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    def _ensure_listener(self) -> None:
        pid = os.getpid()
        if self._listener is not None and self._listener.is_alive() and self._listener_pid == pid:
            return
        with self._lock:
            if self._listener is not None and self._listener.is_alive() and self._listener_pid == pid:
                return
            # A forked worker inherits the parent's tables but not its thread.
            self._marked.clear()
            self._listening.clear()
            self._listener_pid = pid
            self._listener = threading.Thread(
                target=self._listen, args=(self._generation,), name="sold-out-listener", daemon=True
            )
            self._listener.start()

    def restart_listener(self) -> None:
        """Drop every marker and subscribe afresh (after ``REDIS_URL`` changed: tests)."""
        with self._lock:
            self._generation += 1
            self._marked.clear()
            self._returned.clear()
            self._listening.clear()
            self._listener = None

    def wait_until_listening(self, timeout: float = 5.0) -> bool:
        self._ensure_listener()
        return self._listening.wait(timeout)

    def _listen(self, generation: int) -> None:
        backoff = 0.1
        outage_logged = False
        while generation == self._generation:
            pubsub = None
            try:
                pubsub = inventory_redis().pubsub(ignore_subscribe_messages=False)
                pubsub.subscribe(keys.EVENTS_CHANNEL)
                while generation == self._generation:
                    message = pubsub.get_message(timeout=0.2)
                    if message is None:
                        continue
                    if message["type"] == "subscribe" and generation == self._generation:
                        self._listening.set()
                        backoff = 0.1
                        if outage_logged:
                            logger.info("sold-out listener subscribed again")
                        outage_logged = False
                    elif message["type"] == "message":
                        try:
                            self.heard(json.loads(message["data"]))
                        except ValueError:
                            logger.warning("ignoring a malformed event: %r", message["data"])
            except (redis.ConnectionError, redis.TimeoutError, OSError) as error:
                self._listening.clear()
                self.forget_all()
                if not outage_logged:  # Once per outage, not once per retry.
                    logger.warning("sold-out listener lost Redis (%s); markers dropped, retrying", error)
                    outage_logged = True
            except Exception:
                self._listening.clear()
                self.forget_all()
                logger.exception("sold-out listener failed; markers dropped, restarting")
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()
            time.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


sold_out_markers = SoldOutMarkers()
"""The process's markers, shared by every request thread."""
forgets_process_state(sold_out_markers.forget_all)
