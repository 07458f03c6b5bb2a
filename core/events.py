"""One Redis pub/sub subscription per process, for every module that listens to events.

A module registers a handler for a channel (``event_listener.listen``), and callbacks for
when the subscription goes live (``on_live``: reload what may have been missed) and when it is
lost (``on_lost``: drop what can no longer be trusted). One daemon thread per process reads
the subscription and calls the handlers in order; it reconnects with backoff, logging once
per outage. A forked worker starts its own thread on first use.

Handlers run on the listener thread: they must be quick and never raise (an exception is
logged and the message skipped).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from .process_state import current_pid
from .redis_store import inventory_redis

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], None]


class EventListener:
    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}
        self._on_live: list[Callable[[], None]] = []
        self._on_lost: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._live = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._generation = 0  # A thread whose generation is stale stops.
        self.messages_heard = 0

    def listen(self, channel: str, handler: Handler) -> None:
        """Call ``handler`` with every JSON object published on ``channel``."""
        with self._lock:
            self._handlers.setdefault(channel, []).append(handler)
            if self._thread is not None:
                self._restart_locked()  # Subscribe to the new channel too.

    def on_live(self, callback: Callable[[], None]) -> None:
        self._on_live.append(callback)

    def on_lost(self, callback: Callable[[], None]) -> None:
        self._on_lost.append(callback)

    @property
    def live(self) -> bool:
        return self._live.is_set()

    def ensure_running(self) -> None:
        pid = current_pid()
        thread = self._thread
        if thread is not None and thread.is_alive() and self._pid == pid:
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive() and self._pid == pid:
                return
            self._live.clear()
            self._pid = pid
            self._thread = threading.Thread(
                target=self._run, args=(self._generation,), name="event-listener", daemon=True
            )
            self._thread.start()

    def wait_until_live(self, timeout: float = 5.0) -> bool:
        self.ensure_running()
        return self._live.wait(timeout)

    def restart(self) -> None:
        """Subscribe afresh (after ``REDIS_URL`` changed: tests). Calls the ``on_lost``
        callbacks first: what was heard from the old server no longer counts."""
        with self._lock:
            self._restart_locked()
        self._lost()

    def _restart_locked(self) -> None:
        self._generation += 1
        self._live.clear()
        self._thread = None

    def _lost(self) -> None:
        for callback in self._on_lost:
            try:
                callback()
            except Exception:
                logger.exception("an on_lost callback failed")

    def _went_live(self) -> None:
        for callback in self._on_live:
            try:
                callback()
            except Exception:
                logger.exception("an on_live callback failed")

    def _dispatch(self, channel: str, data: str) -> None:
        self.messages_heard += 1
        try:
            event = json.loads(data)
        except ValueError:
            logger.warning("ignoring a malformed event on %s: %r", channel, data)
            return
        if not isinstance(event, dict):
            return
        for handler in self._handlers.get(channel, ()):
            try:
                handler(event)
            except Exception:
                logger.exception("an event handler for %s failed", channel)

    def _run(self, generation: int) -> None:
        backoff = 0.1
        outage_logged = False
        while generation == self._generation:
            pubsub = None
            try:
                channels = list(self._handlers)
                if not channels:
                    time.sleep(0.2)
                    continue
                pubsub = inventory_redis().pubsub(ignore_subscribe_messages=False)
                pubsub.subscribe(*channels)
                waiting = set(channels)
                while generation == self._generation:
                    message = pubsub.get_message(timeout=0.2)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        waiting.discard(message["channel"])
                        if not waiting and generation == self._generation:
                            self._went_live()
                            self._live.set()
                            backoff = 0.1
                            if outage_logged:
                                logger.info("event listener subscribed again")
                            outage_logged = False
                    elif message["type"] == "message":
                        self._dispatch(message["channel"], message["data"])
            except (redis.ConnectionError, redis.TimeoutError, OSError) as error:
                self._live.clear()
                self._lost()
                if not outage_logged:  # Once per outage, not once per retry.
                    logger.warning("event listener lost Redis (%s); retrying", error)
                    outage_logged = True
            except Exception:
                self._live.clear()
                self._lost()
                logger.exception("event listener failed; restarting")
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()
            time.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


event_listener = EventListener()
"""The process's one subscription."""
