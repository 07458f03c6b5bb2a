"""The log's API on a real granian server: the published keys, the newest checkpoint as a
C2SP note, the entries page by page, and proofs that verify against the checkpoints; every
malformed or out-of-range question is the contract's JSON 400, an unknown sale its 404."""

from __future__ import annotations

import base64

import httpx
import pytest

from core import merkle
from salelog import verify
from salelog.models import Checkpoint
from sales.receipts import signing_keys
from tests.factories import make_sale
from tests.processes import ChildProcess
from tests.salelog.logs import attempts, build_here, stream_write

pytestmark = pytest.mark.django_db(transaction=True)

TOTAL = 1500
FIRST = 700


def _get(web: ChildProcess, path: str, **params: int) -> httpx.Response:
    return httpx.get(f"{web.url}{path}", params=params, timeout=30)


def _hashes(answer: httpx.Response) -> list[bytes]:
    assert answer.status_code == 200, answer.text
    return [base64.b64decode(value) for value in answer.json()["hashes"]]


def _two_checkpoint_log() -> tuple[int, list[bytes]]:
    """A sale whose log holds TOTAL entries, checkpointed at FIRST and at TOTAL."""
    sale = make_sale(stock=5)
    entries = attempts(sale.pk, ["SOLD_OUT"] * TOTAL)
    stream_write(sale.pk, entries[:FIRST])
    build_here(sale_id=sale.pk, batch_size=FIRST)
    stream_write(sale.pk, entries[FIRST:])
    build_here(sale_id=sale.pk, batch_size=TOTAL)
    assert list(Checkpoint.objects.filter(sale=sale).values_list("size", flat=True)) == [FIRST, TOTAL]
    return sale.pk, entries


def test_the_api_serves_keys_checkpoint_entries_and_proofs_that_verify(web_server: ChildProcess) -> None:
    sale_id, entries = _two_checkpoint_log()
    leaves = [merkle.leaf_hash(entry) for entry in entries]
    tree = merkle.MemoryTree(leaves)

    keys = _get(web_server, "/api/log/keys/")
    assert keys.status_code == 200
    assert keys.json() == [{"key_id": key.key_id, "public_key": key.public_base64} for key in signing_keys()]
    published = {key["key_id"]: base64.b64decode(key["public_key"]) for key in keys.json()}

    # The newest checkpoint: a signed note, whatever the client says it accepts
    for accept in ("text/plain", "application/json", "*/*"):
        note = httpx.get(f"{web_server.url}/api/sales/{sale_id}/log/checkpoint", headers={"Accept": accept})
        assert note.status_code == 200
        assert note.headers["content-type"] == "text/plain; charset=utf-8"
        assert note.text == Checkpoint.objects.get(sale_id=sale_id, size=TOTAL).note
    head, _ = verify.checkpoint_signer(note.text, published)
    assert (head.size, head.root) == (TOTAL, tree.root())
    earlier = verify.checkpoint_signer(Checkpoint.objects.get(sale_id=sale_id, size=FIRST).note, published)[0]

    # Entries: at most a thousand a page, the next page linked
    page = _get(web_server, f"/api/sales/{sale_id}/log/entries")
    assert page.status_code == 200
    assert len(page.json()) == 1000
    assert page.headers["link"] == f'</api/sales/{sale_id}/log/entries?start=1000&end={TOTAL}>; rel="next"'
    rest = _get(web_server, f"/api/sales/{sale_id}/log/entries", start=1000, end=10**6)
    assert "link" not in rest.headers
    served = page.json() + rest.json()
    assert [item["seq"] for item in served] == list(range(TOTAL))
    assert [base64.b64decode(item["entry"]) for item in served] == entries
    assert [item["leaf_hash"] for item in served] == [leaf.hex() for leaf in leaves]
    assert _get(web_server, f"/api/sales/{sale_id}/log/entries", start=TOTAL).json() == []
    assert [e["seq"] for e in _get(web_server, f"/api/sales/{sale_id}/log/entries", start=5, end=8).json()] == [5, 6, 7]

    # Inclusion proofs, in the newest tree and in an older one
    for index, size in [(0, TOTAL), (699, TOTAL), (1024, TOTAL), (TOTAL - 1, TOTAL), (3, FIRST), (0, 1)]:
        proof = _hashes(_get(web_server, f"/api/sales/{sale_id}/log/proof/inclusion", index=index, size=size))
        assert proof == tree.inclusion_proof(index, size)
        assert verify.verify_inclusion(index, size, leaves[index], proof, tree.root(size))
    # Consistency proofs: the older checkpoint is a prefix of the newer
    proof = _hashes(_get(web_server, f"/api/sales/{sale_id}/log/proof/consistency", first=FIRST, second=TOTAL))
    assert verify.verify_consistency(FIRST, TOTAL, earlier.root, head.root, proof)
    for first, second in [(1, TOTAL), (1024, 1025), (TOTAL, TOTAL), (3, 5)]:
        proof = _hashes(_get(web_server, f"/api/sales/{sale_id}/log/proof/consistency", first=first, second=second))
        assert verify.verify_consistency(first, second, tree.root(first), tree.root(second), proof)


BAD_QUESTIONS = [
    "proof/inclusion?index=abc&size=10",
    "proof/inclusion?index=1.5&size=10",
    "proof/inclusion?index=-1&size=10",
    "proof/inclusion?index=%D9%A1&size=10",  # an Arabic-Indic digit one: not decimal ASCII
    "proof/inclusion?index=%ED%A0%80&size=10",  # a lone surrogate's bytes
    "proof/inclusion?index=%FF&size=10",  # not UTF-8
    "proof/inclusion?size=10",
    "proof/inclusion?index=&size=10",
    "proof/inclusion?index=10&size=10",  # index >= size
    "proof/inclusion?index=0&size=0",
    f"proof/inclusion?index=0&size={TOTAL + 1}",  # size > the tree's
    f"proof/inclusion?index=0&size={'9' * 400}",  # a huge number
    f"proof/inclusion?index=0&size={2**63}",
    "proof/consistency?first=11&second=10",  # first > second
    "proof/consistency?first=0&second=10",
    f"proof/consistency?first=1&second={TOTAL + 1}",
    "proof/consistency?first=1&second=%2010",
    "proof/consistency?first=1e3&second=10",
    "proof/consistency?first=1",
    f"entries?start={TOTAL + 1}",
    "entries?start=10&end=9",
    "entries?start=x",
    f"entries?end={'9' * 30}",
]


def test_every_malformed_or_out_of_range_question_is_the_contracts_400(web_server: ChildProcess) -> None:
    sale_id, _ = _two_checkpoint_log()
    for question in BAD_QUESTIONS:
        answer = httpx.get(f"{web_server.url}/api/sales/{sale_id}/log/{question}", timeout=30)
        assert answer.status_code == 400, (question, answer.text)
        assert answer.json()["status"] == "INVALID_REQUEST", question
        assert answer.json()["detail"], question


def test_an_unknown_sale_is_404_and_a_sale_without_a_log_has_no_checkpoint_yet(web_server: ChildProcess) -> None:
    quiet = make_sale(stock=5)
    for path in ("checkpoint", "entries", "proof/inclusion?index=0&size=1", "proof/consistency?first=1&second=1"):
        for sale_id in (987_654_321, 2**63, 2**70):
            answer = httpx.get(f"{web_server.url}/api/sales/{sale_id}/log/{path}", timeout=30)
            assert answer.status_code == 404, (path, sale_id)
            assert answer.json()["status"] == "NOT_FOUND"
    answer = _get(web_server, f"/api/sales/{quiet.pk}/log/checkpoint")
    assert (answer.status_code, answer.json()["status"]) == (404, "NOT_FOUND")
    assert "no checkpoint yet" in answer.json()["detail"]
    assert _get(web_server, f"/api/sales/{quiet.pk}/log/entries").json() == []
    assert _get(web_server, f"/api/sales/{quiet.pk}/log/proof/inclusion", index=0, size=1).status_code == 400
