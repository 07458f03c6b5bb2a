from __future__ import annotations

from django.db import models
from django.db.models import Q

from sales.models import FlashSale


class SaleLog(models.Model):
    """A sale's transparency log as its builder left it: how many entries it holds and the
    frontier of its Merkle tree (``core.merkle.Frontier``: one hash per set bit of ``size``).

    The row is the log's lock: a builder holds it (``SELECT ... FOR UPDATE``) for the
    transaction that appends entries, their tree nodes and the checkpoint over them, so two
    builders never interleave on one sale and a builder that dies releases it with its
    connection. ``size`` is the size of the newest checkpoint, always."""

    sale = models.OneToOneField(FlashSale, on_delete=models.PROTECT, primary_key=True, related_name="log")
    origin = models.CharField(max_length=255, help_text="The checkpoints' first line and the signing key's name.")
    size = models.PositiveBigIntegerField(default=0)
    frontier = models.BinaryField(default=b"")
    frozen_at = models.DateTimeField(
        null=True, blank=True, help_text="When the final checkpoint was signed; the log takes no entry after it."
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Log of sale {self.sale_id} ({self.size} entries)"


class LogEntry(models.Model):
    """One leaf: the exact bytes the sale's script sequenced as entry ``seq``, and their
    RFC 9162 leaf hash."""

    id = models.BigAutoField(primary_key=True)
    sale = models.ForeignKey(FlashSale, on_delete=models.PROTECT, related_name="log_entries")
    seq = models.PositiveBigIntegerField()
    entry = models.BinaryField()
    leaf_hash = models.BinaryField(max_length=32)

    class Meta:
        ordering = ["sale", "seq"]
        constraints = [models.UniqueConstraint(fields=["sale", "seq"], name="logentry_one_per_seq")]

    def __str__(self) -> str:
        return f"Entry {self.seq} of sale {self.sale_id}"


class LogNode(models.Model):
    """The hash of a complete subtree of a sale's tree, level 1 and up (level 0 is the
    entries' leaf hashes): node ``index`` of ``level`` covers leaves ``[index * 2**level,
    (index + 1) * 2**level)``. Written once, when its last leaf is appended; every proof is
    read from a few of them."""

    id = models.BigAutoField(primary_key=True)
    sale = models.ForeignKey(FlashSale, on_delete=models.PROTECT, related_name="log_nodes")
    level = models.PositiveSmallIntegerField()
    index = models.PositiveBigIntegerField()
    hash = models.BinaryField(max_length=32)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["sale", "level", "index"], name="lognode_one_per_place"),
            models.CheckConstraint(condition=Q(level__gte=1), name="lognode_above_the_leaves"),
        ]

    def __str__(self) -> str:
        return f"Node {self.level}/{self.index} of sale {self.sale_id}"


class Checkpoint(models.Model):
    """A signed tree head of a sale's log: the C2SP note as it was signed and served."""

    id = models.BigAutoField(primary_key=True)
    sale = models.ForeignKey(FlashSale, on_delete=models.PROTECT, related_name="log_checkpoints")
    size = models.PositiveBigIntegerField()
    root_hash = models.BinaryField(max_length=32)
    note = models.TextField()
    key_id = models.CharField(max_length=64)
    signed_at = models.DateTimeField()
    final = models.BooleanField(default=False, help_text="The log was frozen at this checkpoint.")

    class Meta:
        ordering = ["sale", "size"]
        constraints = [
            models.UniqueConstraint(fields=["sale", "size"], name="checkpoint_one_per_size"),
            models.UniqueConstraint(fields=["sale"], condition=Q(final=True), name="checkpoint_one_final"),
        ]

    def __str__(self) -> str:
        return f"Checkpoint {self.size} of sale {self.sale_id}"
