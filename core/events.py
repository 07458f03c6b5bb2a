"""The process's one Redis pub/sub subscription, written once and driven two ways.

A module registers a handler for a channel (``subscription.listen``), a callback for when the
subscription goes live (``on_live``: it may return steps, ``core.steps``, that read back what
was published before, so nothing is missed) and one for when it is lost (``on_lost``: drop
what can no longer be trusted). What a subscription does with a connection is written once,
in ``Subscription``: subscribe to every channel, go live once each is confirmed, hand every
message to its handlers, and after a lost connection call ``on_lost``, log once per outage
and try again with backoff. Two drivers run it:

- ``ensure_running()``: a daemon thread on a blocking client (the WSGI web processes, the
  tests); its ``on_live`` steps run on the process's blocking client;
- ``ensure_running_async(client)``: a task on the running event loop (the ws process, the TCP
  door), its ``on_live`` steps run on ``client``.

Whichever starts first is the process's subscription; the other call does nothing. A forked
worker starts its own on first use.

On a Redis Cluster the subscription is a plain ``SUBSCRIBE`` on one node: a ``PUBLISH`` on any
node (a purchase script's, on its sale's master) reaches the subscribers of every node, so
one connection hears every sale. When that node goes away, the next attempt subscribes on the
next node listed (``core.redis_store.subscription_urls``).

Handlers run on the driver's thread or loop: they must be quick, never block and never raise
(an exception is logged and the message skipped).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from django.conf import settings

from .redis_store import RedisUnavailable, subscription_client, subscription_urls
from .steps import AsyncClient, Steps, drive, drive_async

logger = logging.getLogger(__name__)

CLIENT_NAME = "flashsale-events"
"""The Redis client name of a process's subscription (``CLIENT LIST`` shows one per process)."""
POLL_SECONDS = 0.2
BACKOFF_FIRST_SECONDS = 0.1
BACKOFF_MAX_SECONDS = 5.0

Handler = Callable[[dict[str, Any]], None]
LiveCallback = Callable[[], Steps[None] | None]


class Subscription:
    """The channels a process listens to and what it does with each message."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}
        self._on_live: list[LiveCallback] = []
        self._on_lost: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._live = threading.Event()
        self._driver: threading.Thread | asyncio.Task[None] | None = None
        self._generation = 0  # A driver whose generation is stale stops.
        self.messages_heard = 0

    # --- What modules register ----------------------------------------------------------

    def listen(self, channel: str, handler: Handler) -> None:
        """Call ``handler`` with every JSON object published on ``channel``."""
        with self._lock:
            self._handlers.setdefault(channel, []).append(handler)
            if self._driver is not None:
                self._restart_locked()  # Subscribe to the new channel too.

    def on_live(self, callback: LiveCallback) -> None:
        self._on_live.append(callback)

    def on_lost(self, callback: Callable[[], None]) -> None:
        self._on_lost.append(callback)

    @property
    def live(self) -> bool:
        """True while every channel is subscribed: nothing published now can be missed."""
        return self._live.is_set()

    @property
    def channels(self) -> list[str]:
        return list(self._handlers)

    # --- Drivers ------------------------------------------------------------------------

    def ensure_running(self) -> None:
        """Start the thread driver unless a driver runs (one check of an attribute)."""
        if self._driver is not None:
            return
        with self._lock:
            if self._driver is not None:
                return
            self._live.clear()
            thread = threading.Thread(
                target=self._run_thread, args=(self._generation,), name="event-subscription", daemon=True
            )
            self._driver = thread
            thread.start()

    def ensure_running_async(self, client: AsyncClient) -> None:
        """Start the asyncio driver on the running loop unless a driver runs; ``on_live``
        steps run on ``client``."""
        if self._driver is not None and not (isinstance(self._driver, asyncio.Task) and self._driver.done()):
            return
        with self._lock:
            self._live.clear()
            self._driver = asyncio.get_running_loop().create_task(
                self._run_async(self._generation, client), name="event-subscription"
            )

    def forked(self) -> None:
        """In a forked child: the parent's driver did not come along; the next use starts one."""
        self._driver = None
        self._lock = threading.Lock()
        self._live = threading.Event()

    def wait_until_live(self, timeout: float = 5.0) -> bool:
        self.ensure_running()
        return self._live.wait(timeout)

    async def until_live(self, timeout: float = 5.0) -> bool:
        """``wait_until_live`` for a coroutine on the loop that drives the subscription."""
        deadline = time.monotonic() + timeout
        while not self.live and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return self.live

    def restart(self) -> None:
        """Subscribe afresh (after ``REDIS_URL`` changed: tests). Calls the ``on_lost``
        callbacks first: what was heard from the old server no longer counts."""
        with self._lock:
            self._restart_locked()
        self._lost()

    async def stop_async(self) -> None:
        """Stop the asyncio driver of the running loop and wait for it (a closing event loop:
        tests). A thread driver, or another loop's, goes on."""
        with self._lock:
            task = self._driver
            if not isinstance(task, asyncio.Task) or task.get_loop() is not asyncio.get_running_loop():
                return
            self._restart_locked()
        # Python 3.11's ``wait_for`` (inside redis-py) can swallow a cancellation that lands
        # as its inner call completes; ask again until the task is really done.
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)
        self._lost()

    def _restart_locked(self) -> None:
        self._generation += 1
        self._live.clear()
        self._driver = None

    # --- What both drivers do -----------------------------------------------------------

    def _lost(self) -> None:
        for callback in self._on_lost:
            try:
                callback()
            except Exception:
                logger.exception("an on_lost callback failed")

    def _live_steps(self) -> list[Steps[None]]:
        steps = []
        for callback in self._on_live:
            try:
                made = callback()
            except Exception:
                logger.exception("an on_live callback failed")
                continue
            if made is not None:
                steps.append(made)
        return steps

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

    def _heard(self, generation: int, message: dict[str, Any], waiting: set[str]) -> bool:
        """One message of the connection; True when it completed the subscription."""
        if generation != self._generation:
            return False
        if message["type"] == "subscribe":
            waiting.discard(message["channel"])
            return not waiting
        if message["type"] == "message":
            self._dispatch(message["channel"], message["data"])
        return False

    def _went_live(self, generation: int, outage: _Outage) -> None:
        if generation != self._generation:
            return
        self._live.set()
        outage.over()

    def _went_down(self, generation: int, outage: _Outage, error: BaseException, *, expected: bool) -> bool:
        """The connection failed; False when this driver was replaced and must stop."""
        if generation != self._generation:
            return False
        self._live.clear()
        self._lost()
        outage.begun(error, expected=expected)
        return True

    def _run_thread(self, generation: int) -> None:
        outage = _Outage()
        while generation == self._generation:
            channels = self.channels
            if not channels:
                time.sleep(POLL_SECONDS)
                continue
            pubsub = None
            try:
                pubsub = subscription_client(outage.attempt).pubsub(ignore_subscribe_messages=False)
                pubsub.subscribe(*channels)
                waiting = set(channels)
                while generation == self._generation:
                    message = pubsub.get_message(timeout=POLL_SECONDS)
                    if message is not None and self._heard(generation, message, waiting):
                        for steps in self._live_steps():
                            drive(steps)
                        self._went_live(generation, outage)
            except (*RedisUnavailable, OSError) as error:
                if not self._went_down(generation, outage, error, expected=True):
                    return
            except Exception as error:  # noqa: BLE001 - logged by _went_down, then subscribed again
                if not self._went_down(generation, outage, error, expected=False):
                    return
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()
            time.sleep(outage.backoff())

    async def _run_async(self, generation: int, client: AsyncClient) -> None:
        outage = _Outage()
        while generation == self._generation:
            channels = self.channels
            if not channels:
                await asyncio.sleep(POLL_SECONDS)
                continue
            urls = subscription_urls()
            connection = aioredis.Redis.from_url(
                urls[outage.attempt % len(urls)],
                decode_responses=True,
                client_name=f"{CLIENT_NAME}:{os.getpid()}",
                socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT,
                health_check_interval=30,
            )
            pubsub = connection.pubsub()
            try:
                await pubsub.subscribe(*channels)
                waiting = set(channels)
                while generation == self._generation:
                    message = await pubsub.get_message(timeout=POLL_SECONDS * 5)
                    if message is not None and self._heard(generation, message, waiting):
                        for steps in self._live_steps():
                            await drive_async(steps, client)
                        self._went_live(generation, outage)
            except (*RedisUnavailable, OSError) as error:
                # redis-py can turn a cancellation that lands mid-read into a connection
                # error; a driver being stopped must stop here, not subscribe again forever.
                if _cancelling():
                    raise asyncio.CancelledError from error
                if not self._went_down(generation, outage, error, expected=True):
                    return
            except Exception as error:
                if _cancelling():
                    raise
                if not self._went_down(generation, outage, error, expected=False):
                    return
            finally:
                if generation == self._generation:
                    self._live.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                    await connection.aclose()
            await asyncio.sleep(outage.backoff())


class _Outage:
    """One driver's retries: the backoff, the node to try next, one log line per outage."""

    def __init__(self) -> None:
        self.attempt = 0
        self.delay = BACKOFF_FIRST_SECONDS
        self.logged = False

    def begun(self, error: BaseException, *, expected: bool) -> None:
        if expected:
            self.attempt += 1  # On a cluster: the next node.
            if not self.logged:  # Once per outage, not once per retry.
                logger.warning("event subscription lost Redis (%s); retrying", error)
                self.logged = True
        else:
            logger.error("event subscription failed; subscribing again", exc_info=error)

    def over(self) -> None:
        if self.logged:
            logger.info("event subscription live again")
        self.logged = False
        self.delay = BACKOFF_FIRST_SECONDS

    def backoff(self) -> float:
        delay = self.delay
        self.delay = min(self.delay * 2, BACKOFF_MAX_SECONDS)
        return delay


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


subscription = Subscription()
"""The process's one subscription."""
os.register_at_fork(after_in_child=subscription.forked)
