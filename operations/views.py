"""The operator's pages in the admin: a sale's live console. Staff only (the admin's login),
mounted beside the admin's own pages (``flashsale_project/urls.py``)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from core.shop_time import shop_zone
from sales.models import Admission, FlashSale


def console_socket_url(request: HttpRequest, sale_id: int) -> str:
    """Where the console opens its feed: the ws server the storefront uses
    (``FLASHSALE_WS_URL``), else the page's own host."""
    path = f"/ws/admin/sales/{sale_id}/live/"
    base = settings.FLASHSALE_WS_URL.rstrip("/")
    if base:
        return base + path
    return f"{'wss' if request.is_secure() else 'ws'}://{request.get_host()}{path}"


def sale_console(request: HttpRequest, sale_id: int) -> HttpResponse:
    """The live console of one sale: its figures once a second over the console's socket,
    and after the sale the figures it kept."""
    sale = FlashSale.objects.select_related("product").filter(pk=sale_id).first()
    if sale is None:
        raise Http404("There is no such sale.")
    config = {
        "sale_id": sale.pk,
        "socket_url": console_socket_url(request, sale.pk),
        "shop_zone": shop_zone().key,
        "total_stock": sale.total_stock,
        "queued": sale.admission == Admission.QUEUE,
    }
    context = {
        **admin.site.each_context(request),
        "title": f"Live console: sale {sale.pk}",
        "sale": sale,
        "config": config,
        "change_url": reverse("admin:sales_flashsale_change", args=[sale.pk]),
        "export_url": reverse("admin:orders_order_export"),
        "rehearsal_of": sale.rehearsal_of,
    }
    return render(request, "admin/sales/flashsale/console.html", context)
