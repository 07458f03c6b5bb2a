"""Hostile input to the waiting room, against the real servers (granian with two workers, the
TCP door): the join, the place read and the purchase's pass, over HTTP and over the door's
JOIN_QUEUE, QUEUE_PLACE and ATTEMPT_PURCHASE frames. Every case gets the contract's JSON
refusal (docs/design.md, "The waiting room", "Purchase answers"; docs/tcp.md) and changes
nothing: the line, its count of numbers given, the stock and the buyers are as before."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis
from django.conf import settings

from antibot.proof_of_work import solve
from sales import keys
from sales.models import Admission, FlashSale
from tests.clients import Wire, frame
from tests.factories import auth, make_sale, make_shoppers
from tests.processes import ChildProcess

pytestmark = pytest.mark.django_db(transaction=True)

JOIN_QUEUE, QUEUE_PLACE, ATTEMPT_PURCHASE, PING = 0x05, 0x06, 0x01, 0x04
HUGE_DIGITS = "9" * 5_000
"""An integer longer than Python's JSON reader converts."""
DEEP = "[" * 100_000 + "]" * 100_000
BIG_TEXT = "a" * 60_000
"""A string inside the body and frame limits, far over any field's."""


@dataclass(frozen=True)
class Line:
    """A queue-mode sale (proof of work on the join) with three shoppers in it, a second
    queue-mode sale, and a shopper in neither."""

    sale: FlashSale
    other_sale: FlashSale
    holder: str
    """In the line, let in (the rate is 100 a second): a pass that worked would buy."""
    holder_pass: str
    holder_other_pass: str
    """The holder's pass for the other sale's line."""
    neighbour_pass: str
    """Another shopper's pass for this line."""
    stranger: str
    """In no line: a join that worked would give them the next number."""
    stranger_id: int

    def forged(self) -> str:
        """The holder's pass with another signature of the right shape."""
        payload, _, signature = self.holder_pass.rpartition(".")
        return f"{payload}.{'A' * len(signature)}"


def _proved_join(server: ChildProcess, sale_id: int, token: str) -> str:
    issued = httpx.post(f"{server.url}/api/sales/{sale_id}/challenge/", headers=auth(token), timeout=30).json()
    body = {"challenge": issued["challenge"], "solution": solve(issued["challenge"], issued["difficulty"])}
    joined = httpx.post(f"{server.url}/api/sales/{sale_id}/queue/", json=body, headers=auth(token), timeout=30)
    assert joined.status_code == 201, joined.text
    return str(joined.json()["pass"])


@pytest.fixture
def queue_line(web_server: ChildProcess) -> Line:
    sale = make_sale(admission=Admission.QUEUE, stock=5, serving_rate=100, pow_difficulty=4)
    other = make_sale(admission=Admission.QUEUE, stock=5, serving_rate=100, pow_difficulty=4)
    (_, holder), (_, neighbour), (stranger_id, stranger) = make_shoppers(3)
    holder_pass = _proved_join(web_server, sale.pk, holder)
    return Line(
        sale=sale,
        other_sale=other,
        holder=holder,
        holder_pass=holder_pass,
        holder_other_pass=_proved_join(web_server, other.pk, holder),
        neighbour_pass=_proved_join(web_server, sale.pk, neighbour),
        stranger=stranger,
        stranger_id=stranger_id,
    )


def _sale_state(sale_id: int) -> dict[str, Any]:
    """What a refusal must not change: the line and its numbers, the stock, the buyers."""
    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    try:
        return {
            "line": client.hgetall(keys.line_key(sale_id)),
            "joined": client.hget(keys.line_state_key(sale_id), "joined"),
            "stock": client.get(keys.stock_key(sale_id)),
            "buyers": client.hgetall(keys.buyers_key(sale_id)),
            "orders": client.xlen(keys.orders_stream_key(sale_id)),
        }
    finally:
        client.close()


Expected = tuple[int, str, str]
"""(HTTP status, the body's status, how its detail starts; "" for any)."""


def _judge(line: Line, cases: dict[str, tuple[Callable[[], httpx.Response | dict[str, Any]], Expected]]) -> list[str]:
    """Run every case; a case that answers otherwise, or changes either sale, is a failure."""
    failures = []
    for name, (send, (http_status, status, detail)) in cases.items():
        before = (_sale_state(line.sale.pk), _sale_state(line.other_sale.pk))
        answer = send()
        if isinstance(answer, httpx.Response):
            try:
                body = answer.json()
            except ValueError:
                body = {"status": f"not JSON: {answer.text[:80]!r}"}
            heard: tuple[int, str] = (answer.status_code, str(body.get("status")))
            wanted: tuple[int, str] = (http_status, status)
        else:
            body, heard, wanted = answer, (0, str(answer.get("status"))), (0, status)
        if heard != wanted or not str(body.get("detail", "")).startswith(detail):
            failures.append(f"{name}: heard {heard} {str(body.get('detail'))[:80]!r}, wanted {wanted} {detail!r}")
        if (_sale_state(line.sale.pk), _sale_state(line.other_sale.pk)) != before:
            failures.append(f"{name}: changed Redis")
    return failures


# --- HTTP --------------------------------------------------------------------------------------


def _post(server: ChildProcess, path: str, token: str, body: bytes | str) -> Callable[[], httpx.Response]:
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body

    def send() -> httpx.Response:
        headers = {**auth(token), "Content-Type": "application/json"}
        return httpx.post(f"{server.url}{path}", content=raw, headers=headers, timeout=30)

    return send


def _poster(server: ChildProcess, path: str, token: str) -> Callable[[bytes | str], Callable[[], httpx.Response]]:
    """``token``'s POSTs to ``path``, one per body."""
    return lambda body: _post(server, path, token, body)


def _get(
    server: ChildProcess, path: str, token: str, *, headers: dict[str, Any] | None = None, query: bytes = b""
) -> Callable[[], httpx.Response]:
    def send() -> httpx.Response:
        url = httpx.URL(f"{server.url}{path}", query=query) if query else f"{server.url}{path}"
        return httpx.get(url, headers={**auth(token), **(headers or {})}, timeout=30)

    return send


INVALID = (400, "INVALID_REQUEST", "")


def test_a_hostile_join_is_refused_and_gives_no_place(web_server: ChildProcess, queue_line: Line) -> None:
    # Given a stranger to the line, and proofs of work made for someone or something else
    line = queue_line
    path = f"/api/sales/{line.sale.pk}/queue/"
    other_challenge = httpx.post(
        f"{web_server.url}/api/sales/{line.other_sale.pk}/challenge/", headers=auth(line.stranger), timeout=30
    ).json()
    elsewhere = json.dumps(
        {
            "challenge": other_challenge["challenge"],
            "solution": solve(other_challenge["challenge"], other_challenge["difficulty"]),
        }
    )
    join = _poster(web_server, path, line.stranger)

    # When the stranger joins with each of these bodies
    failures = _judge(
        line,
        {
            "a list": (join("[]"), INVALID),
            "a string": (join('"join"'), INVALID),
            "challenge a number": (join('{"challenge": 42}'), INVALID),
            "challenge a list": (join('{"challenge": ["v1"]}'), INVALID),
            "challenge an object": (join('{"challenge": {"v": 1}}'), INVALID),
            "solution true": (join('{"solution": true}'), INVALID),
            "a pass on the join": (join(json.dumps({"pass": line.holder_pass})), INVALID),
            "challenge huge": (join(json.dumps({"challenge": BIG_TEXT})), INVALID),
            "solution over 64": (join(json.dumps({"challenge": "v1", "solution": "0" * 65})), INVALID),
            "a body over the limit": (join(json.dumps({"challenge": "a" * 70_000})), INVALID),
            "challenge 1e400": (join('{"challenge": 1e400}'), INVALID),
            "challenge a huge integer": (join('{"challenge": ' + HUGE_DIGITS + "}"), INVALID),
            "challenge NaN": (join('{"challenge": NaN}'), INVALID),
            "a lone surrogate": (join('{"challenge": "\\udc80", "solution": "0"}'), INVALID),
            "a raw lone surrogate": (join(b'{"challenge": "\xed\xb2\x80"}'), INVALID),
            "malformed UTF-8": (join(b'{"challenge": "\xff\xfe"}'), INVALID),
            "deep nesting": (join('{"challenge": ' + DEEP + "}"), INVALID),
            "non-ASCII": (
                join(json.dumps({"challenge": "défi-☃", "solution": "é"}, ensure_ascii=False)),
                (403, "POW_INVALID", "forged"),
            ),
            "no proof": (join("{}"), (403, "POW_INVALID", "missing")),
            "challenge null": (join('{"challenge": null, "solution": null}'), (403, "POW_INVALID", "missing")),
            "another sale's proof": (join(elsewhere), (403, "POW_INVALID", "wrong sale")),
        },
    )

    # Then each is the contract's refusal, and nobody was given a number
    assert failures == [], "\n".join(failures)
    assert line.stranger_id not in {int(user) for user in _sale_state(line.sale.pk)["line"]}


def test_a_hostile_place_read_is_refused(web_server: ChildProcess, queue_line: Line) -> None:
    line = queue_line
    path = f"/api/sales/{line.sale.pk}/queue/"

    def with_header(value: str | bytes, token: str | None = None) -> Callable[[], httpx.Response]:
        return _get(web_server, path, token or line.holder, headers={"Queue-Pass": value})

    def with_query(query: bytes, token: str | None = None) -> Callable[[], httpx.Response]:
        return _get(web_server, path, token or line.holder, query=query)

    forged = (403, "QUEUE_PASS_INVALID", "forged")
    failures = _judge(
        line,
        {
            "another sale's pass": (with_header(line.holder_other_pass), (403, "QUEUE_PASS_INVALID", "wrong sale")),
            "another shopper's pass": (with_header(line.neighbour_pass), (403, "QUEUE_PASS_INVALID", "wrong user")),
            "a forged signature": (with_header(line.forged()), forged),
            "a stranger with the holder's pass": (
                with_header(line.holder_pass, line.stranger),
                (403, "QUEUE_PASS_INVALID", "wrong user"),
            ),
            "a word": (with_header("garbage"), forged),
            "four parts": (with_header(f"q1.{line.sale.pk}.1.1"), forged),
            "a huge number": (with_header(f"q1.{line.sale.pk}.1.{HUGE_DIGITS[:90]}.AAAA"), forged),
            "a negative number": (with_header(f"q1.{line.sale.pk}.1.-1.AAAA"), forged),
            "a long header": (with_header("q1." + "9" * 4_000), forged),
            "latin-1 bytes": (with_header("q1.é".encode("latin-1")), forged),
            "UTF-8 bytes": (with_header("q1.☃".encode()), forged),
            "an empty header": (with_header(""), forged),
            "?pass= a NUL": (with_query(b"pass=%00"), forged),
            "?pass= a lone surrogate": (with_query(b"pass=%ED%B2%80"), forged),
            "?pass= bad UTF-8": (with_query(b"pass=%FF%FE"), forged),
            "?pass= non-ASCII": (with_query(b"pass=%E2%98%83"), forged),
            "?pass= long": (with_query(b"pass=" + b"q" * 4_000), forged),
            "?pass= twice": (with_query(b"pass=junk&pass=" + line.forged().encode()), forged),
            "?pass= empty, no place": (with_query(b"pass=", line.stranger), (404, "NOT_FOUND", "")),
            "a sale id far too big": (
                _get(web_server, "/api/sales/99999999999999999999999/queue/", line.holder),
                (404, "NOT_FOUND", ""),
            ),
            "PUT": (
                lambda: httpx.put(f"{web_server.url}{path}", headers=auth(line.holder), timeout=30),
                (405, "METHOD_NOT_ALLOWED", ""),
            ),
            "DELETE": (
                lambda: httpx.delete(f"{web_server.url}{path}", headers=auth(line.holder), timeout=30),
                (405, "METHOD_NOT_ALLOWED", ""),
            ),
            "no token": (
                lambda: httpx.get(f"{web_server.url}{path}", headers={"Queue-Pass": line.holder_pass}),
                (401, "UNAUTHENTICATED", ""),
            ),
        },
    )
    assert failures == [], "\n".join(failures)


def test_a_hostile_pass_on_the_purchase_is_refused_and_sells_nothing(
    web_server: ChildProcess, queue_line: Line
) -> None:
    # Given the holder, let in: a pass that worked would sell them a unit
    line = queue_line
    buy = _poster(web_server, f"/api/sales/{line.sale.pk}/purchase/", line.holder)

    failures = _judge(
        line,
        {
            "pass a number": (buy('{"pass": 42}'), INVALID),
            "pass true": (buy('{"pass": true}'), INVALID),
            "pass a list": (buy(json.dumps({"pass": [line.holder_pass]})), INVALID),
            "pass an object": (buy(json.dumps({"pass": {"pass": line.holder_pass}})), INVALID),
            "pass over 128": (buy(json.dumps({"pass": line.holder_pass + "A" * 128})), INVALID),
            "pass huge": (buy(json.dumps({"pass": BIG_TEXT})), INVALID),
            "a body over the limit": (buy(json.dumps({"pass": "a" * 70_000})), INVALID),
            "pass 1e400": (buy('{"pass": 1e400}'), INVALID),
            "pass a huge integer": (buy('{"pass": ' + HUGE_DIGITS + "}"), INVALID),
            "pass -Infinity": (buy('{"pass": -Infinity}'), INVALID),
            "a lone surrogate": (buy('{"pass": "q1.\\ud800"}'), INVALID),
            "deep nesting": (buy('{"pass": ' + DEEP + "}"), INVALID),
            "an unknown field": (buy(json.dumps({"pass": line.holder_pass, "number": 1})), INVALID),
            "pass null": (buy('{"pass": null}'), (403, "QUEUE_PASS_INVALID", "missing")),
            "pass empty": (buy('{"pass": ""}'), (403, "QUEUE_PASS_INVALID", "missing")),
            "non-ASCII": (
                buy(json.dumps({"pass": "q1.☃.é"}, ensure_ascii=False)),
                (403, "QUEUE_PASS_INVALID", "forged"),
            ),
            "a forged signature": (buy(json.dumps({"pass": line.forged()})), (403, "QUEUE_PASS_INVALID", "forged")),
            "another sale's pass": (
                buy(json.dumps({"pass": line.holder_other_pass})),
                (403, "QUEUE_PASS_INVALID", "wrong sale"),
            ),
            "another shopper's pass": (
                buy(json.dumps({"pass": line.neighbour_pass})),
                (403, "QUEUE_PASS_INVALID", "wrong user"),
            ),
        },
    )

    # Then each is refused, and the holder's own pass still buys (it was the pass, not the turn)
    assert failures == [], "\n".join(failures)
    bought = httpx.post(
        f"{web_server.url}/api/sales/{line.sale.pk}/purchase/",
        json={"pass": line.holder_pass},
        headers=auth(line.holder),
        timeout=30,
    )
    assert bought.status_code == 201, bought.text


# --- The TCP door ------------------------------------------------------------------------------


def _tcp(wire: Wire, kind: int, payload: dict[str, Any] | str | bytes) -> Callable[[], dict[str, Any]]:
    """One frame on a kept connection; the answer, checked to leave the connection usable."""
    if isinstance(payload, dict):
        raw = json.dumps(payload).encode()
    elif isinstance(payload, str):
        raw = payload.encode("utf-8", "surrogatepass")
    else:
        raw = payload

    def send() -> dict[str, Any]:
        wire.send(frame(kind, raw))
        answered, body = wire.read()
        assert answered == kind, (answered, body)
        assert wire.ask(PING, {}) == {"status": "OK"}
        return body

    return send


TCP_INVALID = (0, "INVALID_REQUEST", "")
TCP_UNREADABLE = (0, "ERROR", "")
"""A payload that is not a JSON object Python reads: the seed's answer (docs/tcp.md)."""


def test_hostile_queue_frames_on_the_tcp_door_are_refused(tcp_server: ChildProcess, queue_line: Line) -> None:
    line = queue_line
    sale = line.sale.pk
    port = int(tcp_server.url.rsplit(":", 1)[1])
    stranger = {"product_id": sale, "token": line.stranger}
    holder = {"product_id": sale, "token": line.holder}

    def raw(**fields: str) -> str:
        """A payload with fields spelt as raw JSON (numbers, escapes) after the shopper's."""
        spelt = ", ".join(f'"{name}": {value}' for name, value in fields.items())
        return "{" + json.dumps(stranger)[1:-1] + ", " + spelt + "}"

    def held(**fields: str) -> str:
        spelt = ", ".join(f'"{name}": {value}' for name, value in fields.items())
        return "{" + json.dumps(holder)[1:-1] + ", " + spelt + "}"

    forged_pass = (0, "QUEUE_PASS_INVALID", "forged")
    with Wire(port) as wire:
        failures = _judge(
            line,
            {
                # JOIN_QUEUE from a stranger to the line
                "join: challenge a number": (_tcp(wire, JOIN_QUEUE, raw(challenge="42")), TCP_INVALID),
                "join: challenge a list": (_tcp(wire, JOIN_QUEUE, raw(challenge='["v1"]')), TCP_INVALID),
                "join: challenge an object": (_tcp(wire, JOIN_QUEUE, raw(challenge='{"v": 1}')), TCP_INVALID),
                "join: a pass": (_tcp(wire, JOIN_QUEUE, {**stranger, "pass": line.holder_pass}), TCP_INVALID),
                "join: challenge huge": (_tcp(wire, JOIN_QUEUE, {**stranger, "challenge": BIG_TEXT}), TCP_INVALID),
                "join: challenge 1e400": (_tcp(wire, JOIN_QUEUE, raw(challenge="1e400")), TCP_INVALID),
                "join: a huge integer": (_tcp(wire, JOIN_QUEUE, raw(challenge=HUGE_DIGITS)), TCP_UNREADABLE),
                "join: a lone surrogate": (
                    _tcp(wire, JOIN_QUEUE, raw(challenge='"\\udc80"', solution='"0"')),
                    (0, "POW_INVALID", "forged"),
                ),
                "join: deep nesting": (_tcp(wire, JOIN_QUEUE, raw(challenge=DEEP[:60_000])), TCP_UNREADABLE),
                "join: non-ASCII": (
                    _tcp(wire, JOIN_QUEUE, {**stranger, "challenge": "défi", "solution": "☃"}),
                    (0, "POW_INVALID", "forged"),
                ),
                "join: no proof": (_tcp(wire, JOIN_QUEUE, stranger), (0, "POW_INVALID", "missing")),
                "join: a lone surrogate token": (
                    _tcp(wire, JOIN_QUEUE, '{"product_id": ' + str(sale) + ', "token": "\\udc80"}'),
                    (0, "UNAUTHENTICATED", ""),
                ),
                "join: product_id huge": (
                    _tcp(wire, JOIN_QUEUE, {**stranger, "product_id": 10**30}),
                    (0, "NOT_FOUND", ""),
                ),
                "join: product_id 1.5": (_tcp(wire, JOIN_QUEUE, {**stranger, "product_id": 1.5}), TCP_INVALID),
                "join: product_id a surrogate": (
                    _tcp(wire, JOIN_QUEUE, '{"product_id": "\\ud800", "token": "' + line.stranger + '"}'),
                    (0, "NOT_FOUND", ""),
                ),
                # QUEUE_PLACE from the holder
                "place: pass a number": (_tcp(wire, QUEUE_PLACE, held(**{"pass": "42"})), TCP_INVALID),
                "place: pass a list": (_tcp(wire, QUEUE_PLACE, {**holder, "pass": [line.holder_pass]}), TCP_INVALID),
                "place: pass an object": (_tcp(wire, QUEUE_PLACE, held(**{"pass": "{}"})), TCP_INVALID),
                "place: pass over 128": (_tcp(wire, QUEUE_PLACE, {**holder, "pass": "q" * 129}), TCP_INVALID),
                "place: pass huge": (_tcp(wire, QUEUE_PLACE, {**holder, "pass": BIG_TEXT}), TCP_INVALID),
                "place: pass a huge integer": (
                    _tcp(wire, QUEUE_PLACE, held(**{"pass": HUGE_DIGITS})),
                    TCP_UNREADABLE,
                ),
                "place: a lone surrogate": (_tcp(wire, QUEUE_PLACE, held(**{"pass": '"q1.\\udc80"'})), forged_pass),
                "place: non-ASCII": (_tcp(wire, QUEUE_PLACE, {**holder, "pass": "q1.☃"}), forged_pass),
                "place: deep nesting": (_tcp(wire, QUEUE_PLACE, held(**{"pass": DEEP[:60_000]})), TCP_UNREADABLE),
                "place: a forged signature": (_tcp(wire, QUEUE_PLACE, {**holder, "pass": line.forged()}), forged_pass),
                "place: another sale's pass": (
                    _tcp(wire, QUEUE_PLACE, {**holder, "pass": line.holder_other_pass}),
                    (0, "QUEUE_PASS_INVALID", "wrong sale"),
                ),
                "place: another shopper's pass": (
                    _tcp(wire, QUEUE_PLACE, {**holder, "pass": line.neighbour_pass}),
                    (0, "QUEUE_PASS_INVALID", "wrong user"),
                ),
                "place: a stranger, no pass": (
                    _tcp(wire, QUEUE_PLACE, {**stranger, "pass": None}),
                    (0, "NOT_FOUND", ""),
                ),
                # ATTEMPT_PURCHASE from the holder, let in: a pass that worked would buy
                "purchase: pass a number": (_tcp(wire, ATTEMPT_PURCHASE, held(**{"pass": "42"})), TCP_INVALID),
                "purchase: pass a list": (
                    _tcp(wire, ATTEMPT_PURCHASE, {**holder, "pass": [line.holder_pass]}),
                    TCP_INVALID,
                ),
                "purchase: pass over 128": (_tcp(wire, ATTEMPT_PURCHASE, {**holder, "pass": "q" * 129}), TCP_INVALID),
                "purchase: pass 1e400": (_tcp(wire, ATTEMPT_PURCHASE, held(**{"pass": "1e400"})), TCP_INVALID),
                "purchase: pass null": (
                    _tcp(wire, ATTEMPT_PURCHASE, {**holder, "pass": None}),
                    (0, "QUEUE_PASS_INVALID", "missing"),
                ),
                "purchase: a lone surrogate": (
                    _tcp(wire, ATTEMPT_PURCHASE, held(**{"pass": '"\\udc80"'})),
                    forged_pass,
                ),
                "purchase: non-ASCII": (_tcp(wire, ATTEMPT_PURCHASE, {**holder, "pass": "q1.é"}), forged_pass),
                "purchase: a forged signature": (
                    _tcp(wire, ATTEMPT_PURCHASE, {**holder, "pass": line.forged()}),
                    forged_pass,
                ),
                "purchase: another sale's pass": (
                    _tcp(wire, ATTEMPT_PURCHASE, {**holder, "pass": line.holder_other_pass}),
                    (0, "QUEUE_PASS_INVALID", "wrong sale"),
                ),
                "purchase: another shopper's pass": (
                    _tcp(wire, ATTEMPT_PURCHASE, {**holder, "pass": line.neighbour_pass}),
                    (0, "QUEUE_PASS_INVALID", "wrong user"),
                ),
            },
        )
    assert failures == [], "\n".join(failures)
