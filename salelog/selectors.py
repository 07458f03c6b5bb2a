"""Reads of the transparency log: the sales to build, the stored tree, and what the API
serves (checkpoints, entries, proofs). A proof reads the few complete subtrees it is made of
(``core.merkle``) in at most two queries, whatever the log's size."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q

from core import merkle
from core.merkle import NodeId
from sales.models import FlashSale
from sales.receipts import SigningKey, signing_keys
from sales.selectors import sale_get, sales_watched

from .models import Checkpoint, LogEntry, LogNode, SaleLog

ENTRIES_PAGE_MAX = 1000
"""Entries one page of ``GET /api/sales/<id>/log/entries`` holds at most."""


class TreeIncomplete(Exception):
    """A node the tree must hold is not stored: the log's rows were changed or lost."""


@dataclass(frozen=True, slots=True)
class SaleToBuild:
    sale_id: int
    ends_at: datetime


def sales_to_build(*, now: datetime | None = None) -> list[SaleToBuild]:
    """The watched sales (``sales.selectors.sales_watched``) whose log is not frozen yet. A
    rehearsal's shadow sale has no public log: its attempts are nobody's purchases, and the
    rehearsal deletes the sale after it."""
    watched = sales_watched(now=now)
    rows = (
        FlashSale.objects.real()
        .filter(pk__in=watched)
        .exclude(log__frozen_at__isnull=False)
        .order_by("pk")
        .values_list("pk", "ends_at")
    )
    return [SaleToBuild(sale_id=pk, ends_at=ends_at) for pk, ends_at in rows]


def tree_nodes(*, sale_id: int, nodes: Iterable[NodeId]) -> dict[NodeId, bytes]:
    """The stored hashes of ``nodes``: level 0 from the entries, the rest from the nodes
    table. Raises ``TreeIncomplete`` when one is missing."""
    wanted = set(nodes)
    found: dict[NodeId, bytes] = {}
    leaves = [node.index for node in wanted if node.level == 0]
    if leaves:
        for seq, leaf in LogEntry.objects.filter(sale_id=sale_id, seq__in=leaves).values_list("seq", "leaf_hash"):
            found[NodeId(0, seq)] = bytes(leaf)
    by_level: dict[int, list[int]] = defaultdict(list)
    for node in wanted:
        if node.level > 0:
            by_level[node.level].append(node.index)
    if by_level:
        where = Q()
        for level, indexes in by_level.items():
            where |= Q(level=level, index__in=indexes)
        for level, index, value in LogNode.objects.filter(where, sale_id=sale_id).values_list("level", "index", "hash"):
            found[NodeId(level, index)] = bytes(value)
    missing = wanted - found.keys()
    if missing:
        raise TreeIncomplete(f"sale {sale_id}: the stored tree lacks {sorted(missing)[:5]}")
    return found


def stored_consistency_proof(*, sale_id: int, first: int, second: int) -> list[bytes]:
    ranges = merkle.consistency_ranges(first, second)
    return merkle.proof_hashes(ranges, tree_nodes(sale_id=sale_id, nodes=merkle.nodes_needed(ranges)))


def stored_inclusion_proof(*, sale_id: int, index: int, size: int) -> list[bytes]:
    ranges = merkle.inclusion_ranges(index, size)
    return merkle.proof_hashes(ranges, tree_nodes(sale_id=sale_id, nodes=merkle.nodes_needed(ranges)))


def checkpoint_latest(sale_id: int) -> Checkpoint | None:
    return Checkpoint.objects.filter(sale_id=sale_id).order_by("-size").first()


@dataclass(frozen=True, slots=True)
class PublishedLog:
    """What the API serves of a sale's log: its size (the newest checkpoint's) and whether
    it is frozen."""

    sale_id: int
    size: int
    frozen: bool


def published_log(sale_id: int) -> PublishedLog | None:
    """The sale's log as published; an empty one for a sale whose log has not started, None
    for no such sale."""
    if sale_get(sale_id) is None:
        return None
    log = SaleLog.objects.filter(pk=sale_id).values_list("size", "frozen_at").first()
    if log is None:
        return PublishedLog(sale_id=sale_id, size=0, frozen=False)
    size, frozen_at = log
    return PublishedLog(sale_id=sale_id, size=size, frozen=frozen_at is not None)


@dataclass(frozen=True, slots=True)
class PublishedEntry:
    seq: int
    entry: bytes
    leaf_hash: bytes


def entries_page(*, sale_id: int, start: int, end: int) -> list[PublishedEntry]:
    """Entries ``[start, end)`` in seq order (the caller bounds the range by the log's size
    and the page's length)."""
    rows = (
        LogEntry.objects.filter(sale_id=sale_id, seq__gte=start, seq__lt=end)
        .order_by("seq")
        .values_list("seq", "entry", "leaf_hash")
    )
    return [PublishedEntry(seq=seq, entry=bytes(entry), leaf_hash=bytes(leaf)) for seq, entry, leaf in rows]


def published_keys() -> tuple[SigningKey, ...]:
    return signing_keys()


def shopper_win_entry(*, sale_id: int, shopper: str) -> LogEntry | None:
    """The log entry of a shopper's win in a sale (one at most: one unit per buyer), found
    by the salted hash the entry names them by; None until the builder stored it."""
    found = LogEntry.objects.raw(
        "SELECT * FROM salelog_logentry WHERE sale_id = %s"
        " AND position(%s::bytea in entry) > 0 AND position(%s::bytea in entry) > 0 ORDER BY seq LIMIT 1",
        [sale_id, b'"outcome":"SUCCESS"', f'"shopper":"{shopper}"'.encode()],
    )
    return next(iter(found), None)
