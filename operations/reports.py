"""A rehearsal's report for people: the lines ``manage.py flashsale rehearse`` prints and the
rows the admin shows. Pure functions of the report (``operations.rehearsal``)."""

from __future__ import annotations

from typing import Any

INVARIANTS = {
    "I1": "stock + buyers = total",
    "I2": "one order per buyer",
    "I3": "one unit per shopper",
    "I4": "sold inside the window",
}


def _ms(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1f} ms"


def _seconds(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2f} s"


def _counts(counts: dict[str, Any]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in sorted(counts.items(), key=lambda item: -item[1])) or "none"


def report_failures(report: dict[str, Any]) -> str:
    """Why the rehearsal failed, in one line."""
    why = [f"{name} broken" for name, holds in (report.get("invariants") or {}).items() if not holds]
    why += [
        f"{verdict['target']} {verdict['measured']} over {verdict['limit']}"
        if verdict["target"] != "sell_out_seconds" or verdict["measured"] is not None
        else "did not sell out"
        for verdict in report.get("verdicts") or []
        if not verdict["met"]
    ]
    why += list(report.get("problems") or [])
    return "; ".join(why) or "see the report"


def report_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The report as (what, figure) rows."""
    funnel = report.get("funnel") or {}
    sold_out = "not sold out"
    if report.get("sold_out"):
        sold_out = f"sold out {_seconds(report.get('sell_out_seconds'))} after the start"
    error_kinds = f" ({_counts(report.get('error_kinds') or {})})" if report.get("errors") else ""
    rows = [
        ("Verdict", "PASSED" if report.get("passed") else f"FAILED: {report_failures(report)}"),
        (
            "Invariants",
            ", ".join(
                f"{name} ({INVARIANTS.get(name, name)}) {'holds' if holds else 'BROKEN'}"
                for name, holds in (report.get("invariants") or {}).items()
            )
            or "-",
        ),
        ("Answers", _counts(report.get("answers") or {})),
        ("Rate limited, by reason", _counts(report.get("rate_limited") or {})),
        ("Answer time (shoppers)", f"p50 {_ms(report.get('p50_ms'))}, p99 {_ms(report.get('p99_ms'))}"),
        ("Answer time (server)", f"p50 {_ms(report.get('server_p50_ms'))}, p99 {_ms(report.get('server_p99_ms'))}"),
        (
            "Funnel",
            f"{funnel.get('arrived', 0):,} arrived; shed {_counts(funnel.get('shed') or {})}; "
            f"{funnel.get('to_redis', 0):,} reached Redis",
        ),
        ("Stock", f"{report.get('sold', 0):,} of {report.get('stock', 0):,} sold; {sold_out}"),
        ("Drain", f"every won order stored {_seconds(report.get('drain_seconds'))} after the last win"),
        ("Errors", f"{report.get('errors', 0):,}{error_kinds}"),
    ]
    for verdict in report.get("verdicts") or []:
        met = "met" if verdict["met"] else "MISSED"
        rows.append((f"Target {verdict['target']}", f"{verdict['measured']} against {verdict['limit']}: {met}"))
    return rows


def report_lines(report: dict[str, Any]) -> list[str]:
    """The report as the command prints it."""
    head = f"Rehearsal {report.get('rehearsal_id')} of sale {report.get('sale_id')}"
    head += f" ({report.get('shoppers')} shoppers x {report.get('attempts')} attempts, {report.get('transport')}):"
    return [head, *(f"  {what:<26}{figure}" for what, figure in report_rows(report))]
