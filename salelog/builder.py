"""Building a sale's transparency log: entries from the sale's Redis stream into PostgreSQL,
their Merkle tree, and a signed checkpoint over them.

**Exactly once in PostgreSQL.** The log's size is the builder's only position. A pass reads
the stream from its head, checks the entries the log already holds byte for byte, appends
the one numbered ``size`` and those following it without a gap, and commits the entries,
the new tree nodes, the frontier and a checkpoint over them in one transaction, holding the
sale's log row (``SELECT ... FOR UPDATE SKIP LOCKED``: a second builder passes the sale by).
Only after that commit is the stream trimmed, up to the entries the pass read. A builder
killed anywhere leaves entries in the stream that the log holds (checked and trimmed by the
next pass) or does not hold yet (appended by it): nothing is lost, nothing is doubled, and
no consumer group or claim is involved, since PostgreSQL's row is the one place that says
how far the log got.

**Never a fork.** A checkpoint is signed only for a tree that extends the last one signed:
before signing, the stored nodes must hash to the frontier's root, and the consistency
proof from the last checkpoint to the new tree, built from the stored nodes, must verify
against both roots (``core.merkle.verify_consistency``). A stream entry whose bytes differ
from the stored entry of its seq, a gap in the seqs, or a failed check refuses the batch:
nothing is committed, trimmed or signed, and every later pass refuses again (logged as an
error) until an operator looks.

**Freezing.** Once the sale ended ``FLASHSALE_LOG_FREEZE_AFTER_END_SECONDS`` ago and the
stream holds nothing new, the log is frozen: its newest checkpoint becomes the final one (a
checkpoint of the empty tree if it never had an entry) and the builder visits it no more.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, models, transaction
from django.utils import timezone

from core import merkle
from core.merkle import Frontier
from core.redis_store import inventory_redis
from sales import keys
from sales.receipts import signing_keys

from .checkpoints import checkpoint_sign, origin_acceptable
from .keys import CHECKPOINTS_CHANNEL
from .models import Checkpoint, LogEntry, LogNode, SaleLog
from .selectors import TreeIncomplete, checkpoint_latest, stored_consistency_proof, tree_nodes

logger = logging.getLogger(__name__)


class LogRefused(Exception):
    """The log cannot move on without breaking what it promised: the reason, for people."""


def log_origin(sale_id: int) -> str:
    """The name of a sale's log in its checkpoints: ``<LOG_ORIGIN>/<sale id>``."""
    origin = f"{settings.LOG_ORIGIN}/{int(sale_id)}"
    if not origin_acceptable(origin):
        raise ImproperlyConfigured("LOG_ORIGIN: printable ASCII with no space and no '+'.")
    return origin


@dataclass
class BuildPass:
    """What one pass over a sale's log did."""

    sale_id: int
    appended: int = 0
    checkpoints: list[str] = field(default_factory=list)
    """The notes signed, oldest first."""
    size: int = 0
    """The size of the newest checkpoint this pass signed (0: none)."""
    busy: bool = False
    """Another builder held the log; this pass left it alone."""
    refused: str = ""
    frozen: bool = False


@dataclass(frozen=True, slots=True)
class StreamEntry:
    stream_id: str
    seq: int
    entry: bytes


def _stream_entry(stream_id: str, fields: dict[str, str]) -> StreamEntry:
    seq, entry = fields.get("seq"), fields.get("entry")
    if seq is None or entry is None or not (seq.isascii() and seq.isdigit()):
        raise LogRefused(f"stream entry {stream_id} is not a log entry: {fields!r}")
    return StreamEntry(stream_id=stream_id, seq=int(seq), entry=entry.encode("utf-8"))


def _after(stream_id: str) -> str:
    """The smallest stream id above ``stream_id`` (XTRIM MINID keeps ids from it on)."""
    milliseconds, _, sequence = stream_id.partition("-")
    return f"{milliseconds}-{int(sequence or 0) + 1}"


def _locked_log(sale_id: int) -> SaleLog | None:
    return SaleLog.objects.select_for_update(skip_locked=True).filter(pk=sale_id).first()


def _copy_rows(
    model: type[models.Model], columns: Sequence[str], types: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    """Insert rows with one binary COPY: a batch is thousands of rows, which the ORM's
    per-field preparation would make the slowest part of a pass."""
    if not rows:
        return
    quote = connection.ops.quote_name
    statement = (
        f"COPY {quote(model._meta.db_table)} ({', '.join(quote(column) for column in columns)}) "
        "FROM STDIN (FORMAT BINARY)"
    )
    with connection.cursor() as cursor, cursor.copy(statement) as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def _append(log: SaleLog, entries: list[StreamEntry]) -> Frontier:
    """Store the entries that follow the log, in order, with the tree nodes they complete;
    returns the new frontier (the row is saved). Entries the log holds must be its bytes."""
    frontier = Frontier.from_bytes(log.size, bytes(log.frontier))
    held = [entry.seq for entry in entries if entry.seq < log.size]
    stored: dict[int, bytes] = {}
    if held:
        rows = LogEntry.objects.filter(sale_id=log.sale_id, seq__in=held).values_list("seq", "entry")
        stored = {seq: bytes(entry) for seq, entry in rows}
    new_entries: list[tuple[int, int, bytes, bytes]] = []
    new_nodes: list[tuple[int, int, int, bytes]] = []
    for item in entries:
        if item.seq < frontier.size:
            known = stored.get(item.seq)
            if known is None:  # appended by this same batch: the stream named a seq twice
                known = new_entries[item.seq - log.size][2]
            if known != item.entry:
                raise LogRefused(
                    f"stream entry {item.stream_id} gives seq {item.seq} other bytes than the log holds: "
                    f"{item.entry!r}, the log {known!r}"
                )
            continue
        if item.seq != frontier.size:
            raise LogRefused(f"the stream skips from seq {frontier.size} to {item.seq} (entry {item.stream_id})")
        leaf = merkle.leaf_hash(item.entry)
        new_entries.append((log.sale_id, item.seq, item.entry, leaf))
        frontier, completed = frontier.append(leaf)
        new_nodes.extend((log.sale_id, node.level, node.index, value) for node, value in completed)
    if new_entries:
        _copy_rows(LogEntry, ("sale_id", "seq", "entry", "leaf_hash"), ("int8", "int8", "bytea", "bytea"), new_entries)
        _copy_rows(LogNode, ("sale_id", "level", "index", "hash"), ("int8", "int2", "int8", "bytea"), new_nodes)
        log.size = frontier.size
        log.frontier = frontier.to_bytes()
        log.save(update_fields=["size", "frontier", "updated_at"])
    return frontier


def _extension_check(log: SaleLog, frontier: Frontier, last: Checkpoint | None) -> bytes:
    """The root to sign, once the stored tree is shown to hash to it and to extend the last
    checkpoint signed. Raises ``LogRefused``."""
    root = frontier.root()
    try:
        stored = tree_nodes(sale_id=log.sale_id, nodes=frontier.nodes())
        proof = (
            stored_consistency_proof(sale_id=log.sale_id, first=last.size, second=frontier.size)
            if last is not None and 0 < last.size <= frontier.size
            else []
        )
    except TreeIncomplete as missing:
        raise LogRefused(str(missing)) from None
    if [stored[node] for node in frontier.nodes()] != list(frontier.hashes):
        raise LogRefused(f"the stored tree of sale {log.sale_id} does not hash to its frontier")
    if last is None:
        return root
    if last.size > frontier.size:
        raise LogRefused(f"the last checkpoint ({last.size}) is larger than the tree ({frontier.size})")
    if last.size == 0:
        consistent = bytes(last.root_hash) == merkle.EMPTY_ROOT
    else:
        consistent = merkle.verify_consistency(last.size, frontier.size, bytes(last.root_hash), root, proof)
    if not consistent:
        raise LogRefused(
            f"the tree of {frontier.size} entries does not extend the checkpoint of {last.size}: not signed"
        )
    return root


def _checkpoint_sign(log: SaleLog, frontier: Frontier, *, final: bool = False) -> Checkpoint:
    root = _extension_check(log, frontier, checkpoint_latest(log.sale_id))
    key = signing_keys()[0]
    signed = checkpoint_sign(origin=log.origin, size=frontier.size, root=root, private=key.private)
    return Checkpoint.objects.create(
        sale_id=log.sale_id,
        size=signed.size,
        root_hash=signed.root,
        note=signed.note,
        key_id=key.key_id,
        signed_at=timezone.now(),
        final=final,
    )


def _publish(sale_id: int, note: str) -> None:
    try:
        inventory_redis().publish(CHECKPOINTS_CHANNEL, json.dumps({"sale_id": sale_id, "checkpoint": note}))
    except Exception:
        # The checkpoint is committed and served by the API; the socket hears the next one.
        logger.warning("sale %s: could not publish a checkpoint", sale_id, exc_info=True)


def sale_log_build(
    *,
    sale_id: int,
    ends_at: datetime | None = None,
    now: datetime | None = None,
    batch_size: int | None = None,
) -> BuildPass:
    """Move every new entry of the sale's stream into its log, a checkpoint per batch, then
    freeze the log when the sale ended long enough ago (``ends_at``). Idempotent; safe to run
    concurrently (a second pass on a sale another holds does nothing)."""
    result = BuildPass(sale_id=sale_id)
    now = now or timezone.now()
    batch_size = batch_size or settings.FLASHSALE_LOG_BATCH_SIZE
    grace = timedelta(seconds=settings.FLASHSALE_LOG_FREEZE_AFTER_END_SECONDS)
    freeze_due = ends_at is not None and now >= ends_at + grace
    client = inventory_redis()
    stream = keys.log_stream_key(sale_id)
    if not client.xlen(stream) and not freeze_due:
        return result
    SaleLog.objects.get_or_create(sale_id=sale_id, defaults={"origin": log_origin(sale_id)})
    try:
        while True:
            with transaction.atomic():
                log = _locked_log(sale_id)
                if log is None or log.frozen_at is not None:
                    result.busy = log is None
                    result.frozen = log is not None
                    return result
                raw = cast(list[tuple[str, dict[str, str]]], client.xrange(stream, "-", "+", count=batch_size))
                before = log.size
                frontier = _append(log, [_stream_entry(stream_id, fields) for stream_id, fields in raw])
                signed = _checkpoint_sign(log, frontier) if frontier.size > before else None
            if raw:
                client.xtrim(stream, minid=_after(raw[-1][0]), approximate=False)
            if signed is not None:
                result.appended += signed.size - before
                result.size = signed.size
                result.checkpoints.append(signed.note)
                _publish(sale_id, signed.note)
            if len(raw) < batch_size:
                break
        if freeze_due:
            _freeze(sale_id, result)
    except LogRefused as refusal:
        result.refused = str(refusal)
        logger.error("sale %s: the transparency log stopped: %s", sale_id, refusal)
    if result.appended:
        logger.info("sale %s: %s log entries appended, checkpoint of %s", sale_id, result.appended, result.size)
    return result


def _freeze(sale_id: int, result: BuildPass) -> None:
    """Make the newest checkpoint the final one, unless entries still wait in the stream (a
    later pass appends them first)."""
    client = inventory_redis()
    with transaction.atomic():
        log = _locked_log(sale_id)
        if log is None:
            result.busy = True
            return
        if log.frozen_at is not None or client.xlen(keys.log_stream_key(sale_id)):
            return
        frontier = Frontier.from_bytes(log.size, bytes(log.frontier))
        last = checkpoint_latest(sale_id)
        if last is not None and last.size == frontier.size:
            _extension_check(log, frontier, last)
            last.final = True
            last.save(update_fields=["final"])
            final = last
        else:
            final = _checkpoint_sign(log, frontier, final=True)
            result.checkpoints.append(final.note)
            result.size = final.size
        log.frozen_at = timezone.now()
        log.save(update_fields=["frozen_at", "updated_at"])
    result.frozen = True
    logger.info("sale %s: the transparency log is frozen at %s entries", sale_id, final.size)
    _publish(sale_id, final.note)


def log_stream_backlog(sale_id: int) -> int:
    """Entries waiting in the sale's stream (stored ones not trimmed yet included)."""
    return int(cast(Any, inventory_redis().xlen(keys.log_stream_key(sale_id))))
