"""The admin's pages of rehearsals: each report, read-only, and a way to stop one."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from core.errors import ApplicationError
from sales.models import RehearsalStatus, SaleRehearsal

from .rehearsal import rehearsal_abort
from .reports import report_rows

SHOWN = ("sale", "status", "shoppers", "attempts", "stock", "transport", "started_at", "finished_at", "verdict",
         "report_json")  # fmt: skip


@admin.register(SaleRehearsal)
class SaleRehearsalAdmin(admin.ModelAdmin):
    list_display = ["__str__", "sale", "status", "shoppers", "attempts", "transport", "started_at", "finished_at"]
    list_filter = ["status", "sale"]
    list_select_related = ["sale__product"]
    readonly_fields = SHOWN
    fields = SHOWN
    actions = ["abort"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # A rehearsal starts from its sale (its action) or manage.py flashsale rehearse.

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # A report is what was measured; its page is for reading.

    @admin.display(description="Report")
    def verdict(self, rehearsal: SaleRehearsal) -> str:
        if not rehearsal.report:
            return (
                "Running: its report appears here when it ends." if rehearsal.status == RehearsalStatus.RUNNING else "-"
            )
        rows = format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", report_rows(rehearsal.report))
        return format_html(
            '<table class="rehearsal-report" data-report>{}</table><p><a href="{}">The report as JSON</a></p>',
            rows,
            reverse("api-rehearsal", args=[rehearsal.pk]),
        )

    @admin.display(description="Report (JSON)")
    def report_json(self, rehearsal: SaleRehearsal) -> str:
        return format_html("<pre>{}</pre>", json.dumps(rehearsal.report, indent=2))

    @admin.action(description="Abort: stop the rehearsal and clean up after it")
    def abort(self, request: HttpRequest, queryset: QuerySet[SaleRehearsal]) -> None:
        for rehearsal in queryset.filter(status=RehearsalStatus.RUNNING):
            try:
                rehearsal_abort(rehearsal=rehearsal, reason=f"aborted from the admin by {request.user}")
            except ApplicationError as error:
                self.message_user(request, f"Rehearsal {rehearsal.pk}: {error.detail}", level=messages.WARNING)
            else:
                self.message_user(request, f"Rehearsal {rehearsal.pk} aborted and cleaned up.", level=messages.SUCCESS)
