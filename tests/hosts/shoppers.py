"""``python -m tests.hosts.shoppers``: the shoppers' host of the multi-host test. The suite
runs it inside the shoppers' namespace (``ip netns exec``), where the shop is one name,
``shop.test``, answering on the balancer's public address and nothing else; it writes what
it heard as JSON (``--out``) for the suite to judge.

- ``buy``: a crowd buys one sale over HTTPS, each shopper once at a random instant within
  ``--spread`` seconds, retrying what the contract says to retry (429 and 503 after their
  Retry-After, a connection refused, reset or timed out) until a final answer;
- ``listen``: storefront sockets over ``wss://``, reconnecting as the page does, until a file
  appears;
- ``limits``: the per-address limits as two shoppers on two addresses meet them: the login
  throttle, the socket cap and the TCP door's connection cap, and a purchase over the TCP door.

Answers carry ``time.monotonic()``, the machine's clock that every namespace shares, so the
suite can set them beside the instant of its fault. Imports nothing of the application's
Django side: this is a client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import ssl
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from tcpdoor.frames import MessageType
from tcpdoor.load import DoorClient, DoorClosed

SHOP = "shop.test"
FINAL_CODES = {"SOLD_OUT", "ALREADY_PURCHASED", "ENDED"}
# Longer than the balancer waits for a server (its timeout server): what a browser's fetch,
# which has no timeout of its own, would hear from the balancer, this crowd hears too.
REQUEST_TIMEOUT_S = 60.0


def _tls(ca: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca)


async def _shopper(
    http: httpx.AsyncClient, sale: int, user: int, token: str, *, start_at: float, deadline: float,
    heard: dict[str, Any],
) -> None:  # fmt: skip
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    headers = {"Authorization": f"Token {token}"}
    while time.monotonic() < deadline:
        sent = time.monotonic()
        try:
            response = await http.post(f"/api/sales/{sale}/purchase/", headers=headers)
        except httpx.HTTPError as error:
            heard["answers"].append([time.monotonic(), 0, type(error).__name__, "", sent])
            await asyncio.sleep(0.2)
            continue
        try:
            body = response.json()
        except ValueError:
            body = {}
        code = str(body.get("status", "")) if isinstance(body, dict) else ""
        served_by = response.headers.get("X-Served-By", "")
        heard["answers"].append([time.monotonic(), response.status_code, code, served_by, sent])
        if response.status_code == 201:
            heard["wins"][str(user)] = body["order_id"]
            return
        if code == "ALREADY_PURCHASED":
            heard["held"][str(user)] = body["order_id"]
            return
        if code in FINAL_CODES:
            return
        if response.status_code in (429, 503):
            if "Retry-After" not in response.headers:
                heard["bad"].append(f"{response.status_code} without Retry-After")
            if code not in ("RATE_LIMITED", "UNAVAILABLE"):
                heard["bad"].append(f"{response.status_code} {response.text[:200]}")
            await asyncio.sleep(min(float(response.headers.get("Retry-After", "1")), 0.5) * random.uniform(0.5, 1))
            continue
        heard["bad"].append(f"{response.status_code} {response.text[:200]}")
        return


async def buy(args: argparse.Namespace) -> dict[str, Any]:
    shoppers = json.loads(Path(args.tokens).read_text())
    heard: dict[str, Any] = {"wins": {}, "held": {}, "answers": [], "bad": [], "began": time.monotonic()}
    limits = httpx.Limits(max_connections=args.connections, max_keepalive_connections=args.connections)
    transport = httpx.AsyncHTTPTransport(verify=_tls(args.ca), local_address=args.source, limits=limits)
    deadline = time.monotonic() + args.deadline
    async with httpx.AsyncClient(base_url=args.base, transport=transport, timeout=REQUEST_TIMEOUT_S) as http:
        began = time.monotonic()
        starts = [began + random.uniform(0, args.spread) for _ in shoppers]
        if args.first_now and starts:
            starts[0] = began
        await asyncio.gather(
            *(
                _shopper(http, args.sale, int(user), token, start_at=start, deadline=deadline, heard=heard)
                for (user, token), start in zip(shoppers, starts, strict=True)
            )
        )
    heard["ended"] = time.monotonic()
    return heard


async def _listener(url: str, tls: ssl.SSLContext, source: str, seen: dict[str, Any], stop: Path) -> None:
    """One storefront socket; on a drop, reconnect with a growing pause, as the page does."""
    pause = 0.25
    while not stop.exists():
        try:
            async with connect(
                url, ssl=tls, origin=f"https://{SHOP}:8443", open_timeout=10,  # type: ignore[arg-type]
                local_addr=(source, 0),
            ) as socket:  # fmt: skip
                pause = 0.25
                while not stop.exists():
                    try:
                        message = json.loads(await asyncio.wait_for(socket.recv(), timeout=0.5))
                    except TimeoutError:
                        continue
                    seen["types"][message.get("type", "?")] = seen["types"].get(message.get("type", "?"), 0) + 1
                    if message.get("type") == "hello":
                        seen["hellos"].append(time.monotonic())
        except (OSError, TimeoutError, WebSocketException):
            seen["drops"] += 1
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)


async def listen(args: argparse.Namespace) -> dict[str, Any]:
    tls = _tls(args.ca)
    sources = args.sources.split(",")
    seen = [{"hellos": [], "types": {}, "drops": 0} for _ in range(args.sockets)]
    stop = Path(args.stop_file)
    await asyncio.gather(
        *(_listener(args.url, tls, sources[n % len(sources)], seen[n], stop) for n in range(args.sockets))
    )
    return {"sockets": seen}


async def _logins(base: str, tls: ssl.SSLContext, source: str, tries: int) -> list[int]:
    transport = httpx.AsyncHTTPTransport(verify=tls, local_address=source)
    body = {"username": f"nobody{random.randint(0, 10**9)}", "password": "wrong"}
    async with httpx.AsyncClient(base_url=base, transport=transport, timeout=30) as http:
        return [(await http.post("/api/auth/token/", json=body)).status_code for _ in range(tries)]


async def _socket_cap(url: str, tls: ssl.SSLContext, source: str, count: int) -> list[str]:
    """``count`` sockets held open from ``source`` at once: what each heard first."""
    heard: list[str] = []
    async with contextlib.AsyncExitStack() as held:
        for _ in range(count):
            try:
                opened = connect(
                    url, ssl=tls, origin=f"https://{SHOP}:8443", open_timeout=10,  # type: ignore[arg-type]
                    local_addr=(source, 0),
                )  # fmt: skip
                socket = await held.enter_async_context(opened)
                heard.append(json.loads(await asyncio.wait_for(socket.recv(), timeout=10))["type"])
            except ConnectionClosed as closed:
                heard.append(f"closed {closed.rcvd.code if closed.rcvd else '?'}")
    return heard


async def _door(host: str, port: int, source: str) -> DoorClient:
    reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    return DoorClient(reader, writer)


async def _door_cap(host: str, port: int, source: str, count: int) -> list[str]:
    """``count`` connections held open from ``source`` at once, each sending a PING."""
    heard: list[str] = []
    clients: list[DoorClient] = []
    try:
        for _ in range(count):
            client = await _door(host, port, source)
            clients.append(client)
            try:
                await client.send(bytes.fromhex("04000000027b7d"))
                kind, body = await asyncio.wait_for(client.read(), timeout=10)
                heard.append("PONG" if kind == MessageType.PING else f"{kind:#x} {body.get('error', '')}")
            except DoorClosed:
                heard.append("closed")
    finally:
        for client in clients:
            await client.close()
    return heard


async def limits(args: argparse.Namespace) -> dict[str, Any]:
    tls = _tls(args.ca)
    first, second = args.sources.split(",")
    found: dict[str, Any] = {}
    found["logins_first"] = await _logins(args.base, tls, first, args.login_tries)
    found["logins_second"] = await _logins(args.base, tls, second, 1)
    url = f"wss://{SHOP}:8443/ws/sales/{args.sale}/"
    found["sockets_first"] = await _socket_cap(url, tls, first, args.socket_cap + 1)
    found["sockets_second"] = await _socket_cap(url, tls, second, 1)
    found["door_first"] = await _door_cap(SHOP, args.door_port, first, args.door_cap + 1)
    found["door_second"] = await _door_cap(SHOP, args.door_port, second, 1)
    client = await _door(SHOP, args.door_port, second)
    try:
        body = {"product_id": str(args.sale), "token": args.token}
        found["door_purchase"] = await client.ask(MessageType.ATTEMPT_PURCHASE, body)
    finally:
        await client.close()
    return found


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.hosts.shoppers", description=__doc__.splitlines()[0])
    parser.add_argument("--ca", required=True, help="the certificate the shop's must be")
    parser.add_argument("--out", required=True, help="write what was heard here (JSON)")
    commands = parser.add_subparsers(dest="command", required=True)
    crowd = commands.add_parser("buy")
    crowd.add_argument("--base", default=f"https://{SHOP}:8443")
    crowd.add_argument("--sale", type=int, required=True)
    crowd.add_argument("--tokens", required=True, help="a JSON list of [user id, token]")
    crowd.add_argument("--spread", type=float, required=True)
    crowd.add_argument("--deadline", type=float, required=True)
    crowd.add_argument("--source", required=True, help="the address the crowd connects from")
    crowd.add_argument("--connections", type=int, default=100)
    crowd.add_argument("--first-now", action="store_true", help="the first shopper tries at once")
    sockets = commands.add_parser("listen")
    sockets.add_argument("--url", required=True)
    sockets.add_argument("--sockets", type=int, required=True)
    sockets.add_argument("--sources", required=True, help="addresses, comma-separated, used in turn")
    sockets.add_argument("--stop-file", required=True)
    caps = commands.add_parser("limits")
    caps.add_argument("--base", default=f"https://{SHOP}:8443")
    caps.add_argument("--sale", type=int, required=True)
    caps.add_argument("--token", required=True)
    caps.add_argument("--sources", required=True, help="two addresses, comma-separated")
    caps.add_argument("--login-tries", type=int, required=True)
    caps.add_argument("--socket-cap", type=int, required=True)
    caps.add_argument("--door-cap", type=int, required=True)
    caps.add_argument("--door-port", type=int, default=8002)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    run = {"buy": buy, "listen": listen, "limits": limits}[args.command]
    Path(args.out).write_text(json.dumps(asyncio.run(run(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
