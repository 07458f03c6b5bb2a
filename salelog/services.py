"""Writes of the log app outside the builder."""

from __future__ import annotations

from django.db import transaction

from .models import Checkpoint, LogEntry, LogNode, SaleLog


@transaction.atomic
def sale_log_delete(*, sale_id: int) -> int:
    """Forget a sale's log in PostgreSQL (its entries, nodes and checkpoints), as resetting the
    sale forgets its Redis stream and counter: a sale sold afresh starts its log at seq 0, and
    its old checkpoints would contradict the new tree. Returns the entries deleted."""
    deleted, _ = LogEntry.objects.filter(sale_id=sale_id).delete()
    LogNode.objects.filter(sale_id=sale_id).delete()
    Checkpoint.objects.filter(sale_id=sale_id).delete()
    SaleLog.objects.filter(sale_id=sale_id).delete()
    return deleted
