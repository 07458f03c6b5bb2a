"""Bodies are read as HTTP frames them (issue 21): a chunked purchase body is read and the
purchase judged on it; one over the size limit, or in a transfer coding the server cannot
read, is refused with the contract's 400 and changes nothing. Against a real granian."""

from __future__ import annotations

import json

import pytest
from django.conf import settings

from antibot.proof_of_work import solution_is_valid, solve
from sales import inventory
from tests.clients import challenge
from tests.factories import make_sale, make_shopper
from tests.processes import ChildProcess

from .raw import Answer, Raw, chunked, head

pytestmark = pytest.mark.django_db(transaction=True)

DIFFICULTY = 8


def _port(server: ChildProcess) -> int:
    return int(server.url.rsplit(":", 1)[1])


def _chunked_purchase(server: ChildProcess, sale_id: int, token: str, *parts: bytes, coding: str = "chunked") -> Answer:
    port = _port(server)
    with Raw(port) as client:
        client.send(
            head(
                "POST", f"/api/sales/{sale_id}/purchase/", port,
                Authorization=f"Token {token}", Content_Type="application/json", Transfer_Encoding=coding,
            )
            + chunked(*parts)
        )  # fmt: skip
        answer = client.answer()
    assert answer is not None, "closed without an answer"
    return answer


def _solved_body(server: ChildProcess, sale_id: int, token: str) -> bytes:
    issued = challenge(server, sale_id, token).json()
    return json.dumps({"challenge": issued["challenge"], "solution": solve(issued["challenge"], DIFFICULTY)}).encode()


def test_a_chunked_purchase_body_is_read_and_its_proof_of_work_wins(slow_web: ChildProcess) -> None:
    sale = make_sale(stock=3, pow_difficulty=DIFFICULTY)
    _, token = make_shopper()
    body = _solved_body(slow_web, sale.pk, token)

    answer = _chunked_purchase(slow_web, sale.pk, token, body[:10], body[10:40], body[40:])

    assert (answer.status, answer.json()["status"]) == (201, "SUCCESS")
    assert inventory.sale_counts(sale.pk).remaining == 2


def test_a_chunked_purchase_with_a_wrong_solution_is_judged_on_it(slow_web: ChildProcess) -> None:
    sale = make_sale(stock=3, pow_difficulty=DIFFICULTY)
    _, token = make_shopper()
    issued = challenge(slow_web, sale.pk, token).json()
    wrong = next(f"no{n}" for n in range(10_000) if not solution_is_valid(issued["challenge"], f"no{n}", DIFFICULTY))
    body = json.dumps({"challenge": issued["challenge"], "solution": wrong}).encode()

    answer = _chunked_purchase(slow_web, sale.pk, token, body[:25], body[25:])

    # Not "missing": the body was read
    assert answer.status == 403
    assert answer.json()["status"] == "POW_INVALID"
    assert answer.json()["detail"].startswith("wrong solution")
    assert inventory.sale_counts(sale.pk).remaining == 3


def test_a_chunked_body_exactly_at_the_limit_is_read(slow_web: ChildProcess) -> None:
    sale = make_sale(stock=3, pow_difficulty=DIFFICULTY)
    _, token = make_shopper()
    body = _solved_body(slow_web, sale.pk, token)
    padded = body + b" " * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE - len(body))

    answer = _chunked_purchase(slow_web, sale.pk, token, padded[:30000], padded[30000:])

    assert (answer.status, answer.json()["status"]) == (201, "SUCCESS")


def test_a_chunked_body_over_the_limit_is_refused_with_the_contracts_400_and_changes_nothing(
    slow_web: ChildProcess,
) -> None:
    sale = make_sale(stock=3, pow_difficulty=DIFFICULTY)
    _, token = make_shopper()
    body = _solved_body(slow_web, sale.pk, token)
    padded = body + b" " * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1 - len(body))

    answer = _chunked_purchase(slow_web, sale.pk, token, padded[:30000], padded[30000:])

    assert answer.status == 400
    assert answer.json() == {
        "status": "INVALID_REQUEST",
        "detail": f"The body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.",
    }
    assert inventory.sale_counts(sale.pk).remaining == 3


def test_a_length_over_the_limit_is_refused_before_the_body_is_sent(slow_web: ChildProcess) -> None:
    sale = make_sale(stock=3)
    _, token = make_shopper()
    port = _port(slow_web)
    with Raw(port) as client:
        client.send(
            head(
                "POST", f"/api/sales/{sale.pk}/purchase/", port, Authorization=f"Token {token}",
                Content_Type="application/json", Content_Length=str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1),
            )
        )  # fmt: skip
        # Not a byte of the body sent: the answer comes anyway, and the connection is closed
        answer = client.answer()
        closed = client.closed_by_server()

    assert answer is not None and answer.status == 400
    assert answer.json()["detail"] == f"The body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."
    assert closed
    assert inventory.sale_counts(sale.pk).remaining == 3


def test_a_transfer_coding_the_server_cannot_read_is_refused_with_a_400(slow_web: ChildProcess) -> None:
    sale = make_sale(stock=3)
    _, token = make_shopper()

    answer = _chunked_purchase(slow_web, sale.pk, token, b"{}", coding="gzip, chunked")

    assert answer.status == 400
    assert answer.json() == {
        "status": "INVALID_REQUEST",
        "detail": "Transfer-Encoding 'gzip, chunked' is not supported: send the body as it is, or chunked.",
    }
    assert inventory.sale_counts(sale.pk).remaining == 3
