"""Orders written out for the shop's other systems (fulfilment, accounting) after a sale:
CSV and JSON, one row per order, from the admin and ``manage.py flashsale export``.

A rehearsal's shadow orders are never exported. Rows are read in batches and written as they
come, so a sale of many orders costs no more memory than one batch.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from .models import Order

EXPORT_FIELDS = (
    "order_id",
    "sale_id",
    "product",
    "user_id",
    "username",
    "email",
    "unit_price",
    "status",
    "created_at",
    "paid_at",
    "confirmation_sent_at",
)
"""The columns, in order; times are ISO 8601 in UTC, prices decimal strings."""

FORMATS = ("csv", "json")
BATCH = 2000


def orders_for_export(
    *, sale_ids: Iterable[int] | None = None, within: QuerySet[Order] | None = None
) -> QuerySet[Order]:
    """Real sales' orders, oldest first: of ``sale_ids``, among ``within``, or all."""
    orders = Order.objects.filter(sale__rehearsal_of__isnull=True)
    if sale_ids is not None:
        orders = orders.filter(sale_id__in=list(sale_ids))
    if within is not None:
        orders = orders.filter(pk__in=within.values("pk"))
    return orders.select_related("sale__product", "user").order_by("created_at", "id")


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def order_row(order: Order) -> dict[str, Any]:
    return {
        "order_id": str(order.id),
        "sale_id": order.sale_id,
        "product": order.sale.product.slug,
        "user_id": order.user_id,
        "username": order.user.get_username(),
        "email": order.user.email,
        "unit_price": str(order.unit_price),
        "status": order.status,
        "created_at": _when(order.created_at),
        "paid_at": _when(order.paid_at),
        "confirmation_sent_at": _when(order.confirmation_sent_at),
    }


def order_rows(orders: QuerySet[Order]) -> Iterator[dict[str, Any]]:
    for order in orders.iterator(chunk_size=BATCH):
        yield order_row(order)


class _Line:
    """A file-like target for ``csv.writer`` that hands each line back (``writerow``
    returns what ``write`` returned)."""

    def write(self, text: str) -> str:
        return text


def orders_csv_lines(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """The header, then one CSV line per order (RFC 4180 quoting, CRLF line ends)."""
    line = _Line()
    writer = csv.writer(line)
    yield writer.writerow(EXPORT_FIELDS)
    for row in rows:
        yield writer.writerow(["" if row[name] is None else row[name] for name in EXPORT_FIELDS])


def orders_json_chunks(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """One JSON array of order objects, written in pieces."""
    yield "["
    for index, row in enumerate(rows):
        yield ("," if index else "") + "\n" + json.dumps(row)
    yield "\n]\n"


def orders_export_write(orders: QuerySet[Order], *, form: str, write: Callable[[str], object]) -> int:
    """Write ``orders`` piece by piece with ``write`` as ``form`` (``csv`` or ``json``).
    Returns how many."""
    if form not in FORMATS:
        raise ValueError(f"an export is {' or '.join(FORMATS)}, not {form!r}")
    counted = _Counted(orders)
    for piece in orders_csv_lines(counted.rows()) if form == "csv" else orders_json_chunks(counted.rows()):
        write(piece)
    return counted.count


class _Counted:
    def __init__(self, orders: QuerySet[Order]) -> None:
        self.orders, self.count = orders, 0

    def rows(self) -> Iterator[dict[str, Any]]:
        for row in order_rows(self.orders):
            self.count += 1
            yield row
