"""The operator's pages in the admin: a sale's live console, and its rehearsal's form. Staff
only (the admin's login), mounted beside the admin's own pages (``flashsale_project/urls.py``)."""

from __future__ import annotations

from celery import current_app
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from core.errors import ApplicationError
from core.shop_time import shop_zone
from sales.models import Admission, FlashSale

from .rehearsal import MAX_ATTEMPTS, MAX_SHOPPERS, rehearsal_begin, rehearsal_refusal
from .verdicts import Targets

REHEARSE_TASK = "operations.tasks.rehearse_sale"
"""Sent by name, as every task the web process starts: the worker's code runs it."""


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


class RehearsalForm(forms.Form):
    shoppers = forms.IntegerField(min_value=1, max_value=MAX_SHOPPERS, initial=500, help_text="Shoppers made for it.")
    attempts = forms.IntegerField(
        min_value=1, max_value=MAX_ATTEMPTS, initial=3, help_text="Purchase attempts each, at most."
    )
    stock = forms.IntegerField(min_value=1, required=False, help_text="The shadow sale's units (empty: the sale's).")
    target_p99_ms = forms.FloatField(
        min_value=0, required=False, initial=500, label="Target: p99 (ms)", help_text="Empty: not judged."
    )
    target_sell_out_seconds = forms.FloatField(
        min_value=0, required=False, label="Target: sold out within (s)", help_text="Empty: not judged."
    )
    zero_errors = forms.BooleanField(required=False, initial=True, label="Target: zero errors")
    tcp = forms.BooleanField(required=False, label="Buy through the TCP door", help_text="Else the REST API.")


def sale_rehearse(request: HttpRequest, sale_id: int) -> HttpResponse:
    """The admin's rehearsal of a sale: a form (crowd and targets), then the set-up here, in
    the web process (a refusal shows at once), and the crowd in a Celery worker, sent by
    name. Its report appears on the sale's page."""
    sale = FlashSale.objects.select_related("product").filter(pk=sale_id).first()
    if sale is None:
        raise Http404("There is no such sale.")
    change_url = reverse("admin:sales_flashsale_change", args=[sale.pk])
    form = RehearsalForm(request.POST or None, initial={"stock": sale.total_stock})
    if request.method == "POST" and form.is_valid():
        values = form.cleaned_data
        targets = Targets(
            p99_ms=values["target_p99_ms"],
            sell_out_seconds=values["target_sell_out_seconds"],
            zero_errors=values["zero_errors"],
        )
        try:
            stage = rehearsal_begin(
                sale=sale,
                shoppers=values["shoppers"],
                attempts=values["attempts"],
                stock=values["stock"],
                targets=targets,
                transport="tcp" if values["tcp"] else "http",
                requested_by_id=request.user.pk,
            )
        except ApplicationError as refused:
            messages.error(request, refused.detail)
        else:
            transaction.on_commit(
                lambda: current_app.send_task(REHEARSE_TASK, args=(stage.rehearsal_id,), kwargs={"tcp": values["tcp"]})
            )
            console = reverse("admin-sale-console", args=[stage.shadow_sale_id])
            messages.success(
                request,
                format_html(
                    "Rehearsal {} started: shadow sale {} (watch it on <a href='{}'>its console</a>). "
                    "Its report appears below in a minute or so.",
                    stage.rehearsal_id,
                    stage.shadow_sale_id,
                    console,
                ),
            )
            return redirect(change_url)
    context = {
        **admin.site.each_context(request),
        "title": f"Rehearse sale {sale.pk}",
        "sale": sale,
        "form": form,
        "change_url": change_url,
        "refusal": rehearsal_refusal(sale, now=timezone.now()),
    }
    return render(request, "admin/sales/flashsale/rehearse.html", context)
