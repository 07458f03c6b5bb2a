"""``manage.py tcpserver``: the TCP front door (docs/tcp.md), asyncio on uvloop.

Authenticated by default: a purchase names its shopper with the REST API's access token.
``--trust-user-id`` takes the seed's bare ``user_id`` instead, for a gateway that already
authenticated the shopper; it is refused unless the door listens on loopback or inside
``TCP_TRUSTED_NETWORKS``, and then only serves peers there too. SIGTERM or SIGINT shut it
down gracefully (``tcpdoor.server``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from typing import Any

import uvloop
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from redis.exceptions import RedisError

from core.client_address import address_in, networks_parse
from core.events import subscription
from core.pipelining import AutoPipeline
from core.redis_store import inventory_redis_async
from sales.purchase import drain_kick_warm
from sales.tally import tally
from tcpdoor.door import Door
from tcpdoor.metrics import metrics_listen
from tcpdoor.server import DoorServer, Limits

READY = "tcp door listening on tcp://{host}:{port} ({mode})"


class Command(BaseCommand):
    help = "Serve the TCP front door (the seed's TLV protocol) on the REST API's purchase core."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=8002, help="port to listen on (default 8002; 0: any free)")
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=0,
            help="also serve GET /metrics on this port (a container of its own; default 0: off, as under make run)",
        )
        parser.add_argument(
            "--trust-user-id",
            action="store_true",
            help="take the seed's bare user_id (a gateway authenticated the shopper); loopback or "
            "TCP_TRUSTED_NETWORKS only",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        host, port, trust = options["host"], options["port"], options["trust_user_id"]
        try:
            networks = networks_parse(settings.TCP_TRUSTED_NETWORKS, setting="TCP_TRUSTED_NETWORKS")
            proxies = networks_parse(settings.TRUSTED_PROXY_NETWORKS, setting="TRUSTED_PROXY_NETWORKS")
        except ValueError as error:
            raise CommandError(str(error)) from None
        if trust and not address_in("127.0.0.1" if host == "localhost" else host, networks):
            raise CommandError(
                f"--trust-user-id believes whoever connects: it listens on loopback or inside "
                f"TCP_TRUSTED_NETWORKS only, not on {host}."
            )
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(
                self._serve(
                    host,
                    port,
                    trusted=networks if trust else None,
                    proxies=proxies if settings.TCP_PROXY_PROTOCOL else None,
                    metrics_port=options["metrics_port"],
                )
            )

    async def _serve(self, host: str, port: int, *, trusted: Any, proxies: Any, metrics_port: int) -> None:
        # The commands of every attempt waiting on Redis in one turn of the loop go together.
        client = AutoPipeline(inventory_redis_async())
        door = Door(redis=client, trust_user_id=trusted is not None)
        server = DoorServer(door=door, limits=Limits.from_settings(), trusted=trusted, proxies=proxies)
        scrapes = None
        try:
            await server.listen(host, port)
            if metrics_port:
                scrapes = await metrics_listen(host, metrics_port)
        except OSError as error:
            await client.aclose()
            raise CommandError(f"cannot listen on {host}: {error}") from None
        # Wins, stock returns and revocations arrive through the subscription. It runs on this
        # loop, its on_live steps on the door's client, not on a thread of its own: a thread
        # woken by every win's event takes the interpreter from the loop (docs/benchmark.md,
        # "The TCP door's subscription on its loop").
        subscription.ensure_running_async(client)
        await asyncio.to_thread(drain_kick_warm)
        # Everything loaded so far lives as long as the process: out of the collector's sight,
        # a full collection no longer walks Django's and the apps' objects (tens of ms here, on
        # the answers of every connection at once).
        gc.collect()
        gc.freeze()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        mode = "trusted user_id" if trusted is not None else "authenticated"
        self.stdout.write(READY.format(host=host, port=server.port, mode=mode))
        if scrapes is not None:
            self.stdout.write(f"tcp door: metrics on http://{host}:{metrics_port}/metrics")
        self.stdout.flush()
        await stop.wait()
        self.stdout.write("tcp door: shutting down (answering what is in flight) ...")
        self.stdout.flush()
        if scrapes is not None:
            scrapes.close()
        await server.shutdown()
        await subscription.stop_async()
        await client.aclose()
        with contextlib.suppress(RedisError):
            await asyncio.to_thread(tally.flush)
        self.stdout.write("tcp door: stopped.")
