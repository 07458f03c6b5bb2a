"""The log builder against a real worker, Redis and PostgreSQL: entries move from the sale's
stream into the log exactly once, each batch gets a signed checkpoint published for the
sale's socket, a builder SIGKILLed mid-pass is resumed with nothing lost or doubled, a tree
that does not extend the last checkpoint is never signed, and an ended sale's log is frozen."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from core import merkle
from core.redis_store import inventory_redis
from salelog import verify
from salelog.keys import CHECKPOINTS_CHANNEL
from salelog.models import Checkpoint, LogEntry, LogNode, SaleLog
from salelog.selectors import sales_to_build, stored_consistency_proof
from sales import keys
from sales.receipts import signing_keys
from sales.services import sale_shadow_create
from sales.warming import sale_warm
from tests.factories import make_sale
from tests.processes import ChildProcess, start_worker
from tests.salelog.logs import attempts, build_here, build_until, stream_write

pytestmark = pytest.mark.django_db(transaction=True)


def _size(sale_id: int) -> int:
    return SaleLog.objects.filter(pk=sale_id).values_list("size", flat=True).first() or 0


def _published_keys() -> dict[str, bytes]:
    return {key.key_id: key.public_raw for key in signing_keys()}


def _stored(sale_id: int) -> list[bytes]:
    return [
        bytes(entry)
        for entry in LogEntry.objects.filter(sale_id=sale_id).order_by("seq").values_list("entry", flat=True)
    ]


def _checkpoints_consistent(sale_id: int) -> None:
    """Each checkpoint is signed by the published key and extends the one before it."""
    signed = list(Checkpoint.objects.filter(sale_id=sale_id).order_by("size"))
    for older, newer in itertools.pairwise(signed):
        proof = stored_consistency_proof(sale_id=sale_id, first=older.size, second=newer.size)
        assert merkle.verify_consistency(older.size, newer.size, bytes(older.root_hash), bytes(newer.root_hash), proof)
    for checkpoint in signed:
        parsed, _ = verify.checkpoint_signer(checkpoint.note, _published_keys())
        assert (parsed.size, parsed.root) == (checkpoint.size, bytes(checkpoint.root_hash))


def test_the_builder_moves_the_stream_into_the_log_and_publishes_a_signed_checkpoint_per_batch(
    log_worker: ChildProcess,
) -> None:
    sale = make_sale(stock=3)
    entries = attempts(sale.pk, ["NOT_STARTED", "SUCCESS", "SUCCESS", "ALREADY_PURCHASED", "SUCCESS"])
    entries += attempts(sale.pk, ["SOLD_OUT"] * 4, first_seq=5)
    listener = inventory_redis().pubsub(ignore_subscribe_messages=True)
    listener.subscribe(CHECKPOINTS_CHANNEL)

    # Given five entries in the stream, then four more once the first five are in the log
    stream_write(sale.pk, entries[:5])
    build_until(lambda: _size(sale.pk) == 5, what="the first five entries in the log")
    stream_write(sale.pk, entries[5:])
    build_until(lambda: _size(sale.pk) == 9, what="nine entries in the log")

    # Then the log holds each entry once, byte for byte, and the tree over them
    assert _stored(sale.pk) == entries
    leaves = [merkle.leaf_hash(entry) for entry in entries]
    assert [
        bytes(h) for h in LogEntry.objects.filter(sale=sale).order_by("seq").values_list("leaf_hash", flat=True)
    ] == leaves
    assert LogNode.objects.filter(sale=sale).count() == 9 - (9).bit_count()  # every complete subtree above the leaves
    log = SaleLog.objects.get(pk=sale.pk)
    assert merkle.Frontier.from_bytes(9, bytes(log.frontier)).root() == merkle.root(leaves)
    assert log.origin == f"{settings.LOG_ORIGIN}/{sale.pk}"
    # ...with a checkpoint per batch, each extending the one before, and the stream trimmed
    assert list(Checkpoint.objects.filter(sale=sale).values_list("size", flat=True)) == [5, 9]
    assert bytes(Checkpoint.objects.get(sale=sale, size=9).root_hash) == merkle.root(leaves)
    _checkpoints_consistent(sale.pk)
    assert inventory_redis().xlen(keys.log_stream_key(sale.pk)) == 0
    # ...and each checkpoint went out on the channel the sale's socket relays
    heard: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while len(heard) < 2 and time.monotonic() < deadline:
        message = listener.get_message(timeout=1)  # None for the subscription's own reply too
        if message is not None:
            heard.append(json.loads(message["data"]))
    listener.close()
    assert heard == [
        {"sale_id": sale.pk, "checkpoint": note}
        for note in Checkpoint.objects.filter(sale=sale).order_by("size").values_list("note", flat=True)
    ]


def test_a_builder_sigkilled_mid_pass_is_resumed_with_no_entry_lost_or_doubled() -> None:
    # Given a sale whose stream holds 6,000 entries, built 25 to a transaction
    sale = make_sale(stock=10)
    total = 6000
    entries = attempts(sale.pk, ["SOLD_OUT"] * total)
    stream_write(sale.pk, entries)
    queue = f"log-crash-{sale.pk}"
    small_batches = {"FLASHSALE_LOG_BATCH_SIZE": "25"}
    doomed = start_worker(name="doomed-log", queue=queue, **small_batches)
    try:
        # When its builder is SIGKILLed once the first checkpoints are signed
        build_until(lambda: _size(sale.pk) > 0, what="the first batches", queue=queue)
        doomed.kill()
    finally:
        doomed.stop()
    at_kill = _size(sale.pk)
    assert at_kill < total, "the builder finished before it was killed; the test proved nothing"

    # Then another builder takes the log up where the committed batches left it
    survivor = start_worker(name="survivor-log", queue=queue, **small_batches)
    try:
        build_until(lambda: _size(sale.pk) == total, what="every entry in the log", queue=queue, timeout=180)
    finally:
        survivor.stop()
    assert _stored(sale.pk) == entries
    assert sorted(LogEntry.objects.filter(sale=sale).values_list("seq", flat=True)) == list(range(total))
    assert LogNode.objects.filter(sale=sale).count() == total - total.bit_count()
    assert bytes(Checkpoint.objects.filter(sale=sale).order_by("-size").first().root_hash) == merkle.root(  # type: ignore[union-attr]
        [merkle.leaf_hash(entry) for entry in entries]
    )
    _checkpoints_consistent(sale.pk)
    assert inventory_redis().xlen(keys.log_stream_key(sale.pk)) == 0


def test_a_tree_that_does_not_extend_the_last_checkpoint_is_never_signed(log_worker: ChildProcess) -> None:
    # Given a log of six entries whose stored frontier was altered since its last checkpoint
    sale, witness = make_sale(stock=3), make_sale(stock=3)  # the witness is built after the sale in a pass
    entries = attempts(sale.pk, ["SUCCESS", "SUCCESS", "SUCCESS", "SOLD_OUT", "SOLD_OUT", "SOLD_OUT", "SOLD_OUT"])
    stream_write(sale.pk, entries[:6])
    build_until(lambda: _size(sale.pk) == 6, what="six entries in the log")
    log = SaleLog.objects.get(pk=sale.pk)
    forged = bytearray(bytes(log.frontier))
    forged[0] ^= 1
    SaleLog.objects.filter(pk=sale.pk).update(frontier=bytes(forged))

    # When a seventh entry arrives and a builder passes over the sale (and then the witness)
    stream_write(sale.pk, entries[6:])
    stream_write(witness.pk, attempts(witness.pk, ["SUCCESS"]))
    build_until(lambda: _size(witness.pk) == 1, what="the witness's entry in its log")

    # Then nothing was signed, stored or trimmed for the sale: its last checkpoint stands
    assert list(Checkpoint.objects.filter(sale=sale).values_list("size", flat=True)) == [6]
    assert _size(sale.pk) == 6
    assert LogEntry.objects.filter(sale=sale).count() == 6
    assert inventory_redis().xlen(keys.log_stream_key(sale.pk)) == 1
    result = build_here(sale_id=sale.pk)
    assert "does not hash to its frontier" in result.refused
    assert result.checkpoints == []


def test_a_stream_entry_that_contradicts_the_log_or_skips_a_seq_is_refused() -> None:
    sale = make_sale(stock=3)
    entries = attempts(sale.pk, ["SUCCESS", "SUCCESS", "SOLD_OUT"])
    stream_write(sale.pk, entries)
    build_here(sale_id=sale.pk)
    assert _size(sale.pk) == 3

    # A second entry for seq 1 with other bytes: a fork at the sequencer, never appended
    stream_write(sale.pk, attempts(sale.pk, ["SOLD_OUT"], first_seq=1))
    refused = build_here(sale_id=sale.pk)
    assert "other bytes than the log holds" in refused.refused
    assert inventory_redis().xlen(keys.log_stream_key(sale.pk)) == 1
    inventory_redis().delete(keys.log_stream_key(sale.pk))

    # An entry past a gap (seq 4 where 3 is next): nothing after the gap is appended
    stream_write(sale.pk, attempts(sale.pk, ["SOLD_OUT"], first_seq=4))
    assert "skips from seq 3 to 4" in build_here(sale_id=sale.pk).refused
    assert _size(sale.pk) == 3
    assert list(Checkpoint.objects.filter(sale=sale).values_list("size", flat=True)) == [3]

    # The same entries again (a pass killed before it trimmed): checked, trimmed, not doubled
    inventory_redis().delete(keys.log_stream_key(sale.pk))
    stream_write(sale.pk, entries)
    again = build_here(sale_id=sale.pk)
    assert (again.refused, again.appended, again.checkpoints) == ("", 0, [])
    assert inventory_redis().xlen(keys.log_stream_key(sale.pk)) == 0


def test_an_ended_sales_log_is_frozen_at_a_final_checkpoint_and_takes_nothing_after(
    log_worker: ChildProcess,
) -> None:
    # Given a sale that ended a minute ago with four entries, and one that ended with none
    grace = settings.FLASHSALE_LOG_FREEZE_AFTER_END_SECONDS
    ended = make_sale(stock=2, starts_in=-(grace + 120), duration=60)
    silent = make_sale(stock=2, starts_in=-(grace + 120), duration=60)
    entries = attempts(ended.pk, ["SUCCESS", "SUCCESS", "SOLD_OUT", "ENDED"])
    stream_write(ended.pk, entries)

    # When the builder passes
    build_until(
        lambda: SaleLog.objects.filter(pk__in=[ended.pk, silent.pk], frozen_at__isnull=False).count() == 2,
        what="both logs frozen",
    )

    # Then each log's last checkpoint is its final one
    final = Checkpoint.objects.get(sale=ended, final=True)
    assert (final.size, bytes(final.root_hash)) == (4, merkle.root([merkle.leaf_hash(e) for e in entries]))
    empty = Checkpoint.objects.get(sale=silent, final=True)
    assert (empty.size, bytes(empty.root_hash)) == (0, merkle.EMPTY_ROOT)
    assert verify.checkpoint_signer(empty.note, _published_keys())[0].size == 0
    # ...and an entry arriving later stays out of the frozen log
    stream_write(ended.pk, attempts(ended.pk, ["ENDED"], first_seq=4))
    assert build_here(sale_id=ended.pk, ends_at=ended.ends_at, now=timezone.now()).frozen
    assert _size(ended.pk) == 4
    assert Checkpoint.objects.filter(sale=ended).count() == 1


def test_beat_runs_the_builder_every_tick_and_drops_a_tick_nobody_ran() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["build-sale-logs"]
    interval = settings.FLASHSALE_LOG_INTERVAL_SECONDS
    assert entry == {"task": "salelog.tasks.build_sale_logs", "schedule": interval, "options": {"expires": interval}}
    assert interval <= 1.0


def test_a_rehearsals_shadow_sale_has_no_log_to_build() -> None:
    # Given a real sale and a rehearsal's shadow of it, both loaded and running
    real = make_sale(stock=3)
    shadow = sale_shadow_create(sale=real, stock=3, starts_at=timezone.now())
    sale_warm(sale=shadow)

    # Then the builder's tick has the real sale's log to build, not the shadow's
    to_build = {sale.sale_id for sale in sales_to_build()}
    assert real.pk in to_build
    assert shadow.pk not in to_build
