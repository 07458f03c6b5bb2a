"""``manage.py flashsale``: the operator's tool (init, status, buyers, reset, export, rehearse,
shoppers, deactivate, admin, capacity, webhooks).

A ``<sale|product>`` argument is a sale id, or a product slug meaning that product's newest
sale. Output is for people; ``--json`` prints one JSON document for scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from dataclasses import asdict
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import IntegrityError
from django.utils import timezone

from accounts.services import admin_password_set, shoppers_create, user_deactivate
from core.errors import ApplicationError
from core.redis_store import RedisUnavailable
from core.shop_time import (
    UnknownTimeZone,
    WallTimeInvalid,
    shop_zone,
    wall_time_label,
    wall_time_parse,
    wall_time_to_utc,
    zone_named,
)
from orders.exports import FORMATS, orders_export_write, orders_for_export
from orders.models import DeliveryStatus, Order, WebhookDelivery, WebhookEndpoint, WebhookEventType
from orders.reconciliation import sale_reconcile
from orders.services import sale_orders_delete
from orders.webhooks import (
    deliveries_replay,
    endpoint_add,
    endpoint_remove,
    endpoint_resume,
    endpoint_rotate,
    endpoints_backlog,
)
from salelog.services import sale_log_delete
from sales import inventory
from sales.models import Admission, FlashSale, Product
from sales.selectors import sale_newest_for_product
from sales.services import product_create, sale_create, sale_reset
from sales.warming import sale_warm

from ...capacity import POD_SIZES, Demand, capacity_plan, figures_from_results, replicas_for
from ...rehearsing import ApiStage, LocalStage, StageClient, rehearsal_drive
from ...reports import report_failures as _failures
from ...reports import report_lines
from ...verdicts import Targets


def _serving_rate(raw: str) -> int | None:
    if raw == "auto":
        return None
    try:
        rate = int(raw)
    except ValueError:
        raise CommandError(f"--serving-rate is a number of shoppers a second or auto, not {raw!r}.") from None
    if rate < 1:
        raise CommandError("--serving-rate must be at least 1 (or auto).")
    return rate


def _wall_time(raw: str) -> datetime:
    try:
        return wall_time_parse(raw)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _zone(raw: str) -> ZoneInfo:
    try:
        return zone_named(raw)
    except UnknownTimeZone as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _decimal(raw: str) -> Decimal:
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise CommandError(f"{raw!r} is not a price.") from None
    if value < 0:
        raise CommandError("A price cannot be negative.")
    return value


class Command(BaseCommand):
    help = "Set up, inspect and reset flash sales."

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(
            dest="action",
            required=True,
            metavar="init|status|buyers|reset|export|rehearse|shoppers|deactivate|admin|capacity|webhooks",
        )

        init = commands.add_parser("init", help="create a sale (and its product) and load it into Redis")
        init.add_argument("product", help="product slug; created if missing")
        init.add_argument("stock", type=int)
        init.add_argument("--price", type=_decimal, default=Decimal("1.00"))
        init.add_argument("--list-price", type=_decimal, default=None, help="for a new product (default 10x price)")
        when = init.add_mutually_exclusive_group()
        when.add_argument("--starts-in", type=int, default=None, help="seconds from now (default 60)")
        when.add_argument(
            "--starts-at",
            type=_wall_time,
            default=None,
            metavar='"YYYY-MM-DD HH:MM"',
            help="the start on the shop's clock (SHOP_TIME_ZONE), or --tz's",
        )
        init.add_argument(
            "--tz", type=_zone, default=None, help="the zone --starts-at is in (an IANA name; default SHOP_TIME_ZONE)"
        )
        init.add_argument("--duration", type=int, default=3600, help="seconds the sale stays open (default 3600)")
        init.add_argument("--pow-difficulty", type=int, default=0)
        init.add_argument("--bucket-capacity", type=int, default=1000)
        init.add_argument("--bucket-refill", type=int, default=500)
        init.add_argument(
            "--admission",
            choices=[choice.value for choice in Admission],
            default=Admission.DIRECT.value,
            help="direct (default): everyone may try at the start; queue: shoppers join a line",
        )
        init.add_argument(
            "--pre-queue-opens-in",
            type=int,
            default=None,
            help="queue: seconds from now when the line opens (default: at the start)",
        )
        init.add_argument(
            "--shuffle-pre-queue",
            action="store_true",
            help="queue: put those who join before the start in a random order",
        )
        init.add_argument(
            "--serving-rate",
            type=_serving_rate,
            default=None,
            help="queue: shoppers let in per second, or auto (default): from the units left",
        )

        for name, text in (
            ("status", "remaining, buyers, orders in PostgreSQL, backlog, I1/I2 verdict"),
            ("buyers", "every buyer and their order id"),
            ("reset", "erase the sale's Redis state (refuses a live sale without --force)"),
        ):
            sub = commands.add_parser(name, help=text)
            sub.add_argument("sale", help="sale id or product slug")
            if name == "reset":
                sub.add_argument("--force", action="store_true", help="reset even while the sale is live")
                sub.add_argument("--delete-orders", action="store_true", help="also delete its orders in PostgreSQL")
        export = commands.add_parser("export", help="the sale's orders as CSV or JSON (after the sale)")
        export.add_argument("sale", help="sale id or product slug")
        export.add_argument("--format", choices=FORMATS, default="csv", help="csv (default) or json")
        export.add_argument("--output", type=Path, default=None, help="write to this file (default: stdout)")
        rehearse = commands.add_parser(
            "rehearse", help="a shadow sale with the sale's admission settings, a synthetic crowd, a report"
        )
        rehearse.add_argument("sale", help="sale id (or, on this stack, a product slug)")
        rehearse.add_argument("--shoppers", type=int, required=True, help="shoppers in the crowd")
        rehearse.add_argument("--attempts", type=int, required=True, help="purchase attempts each, at most")
        rehearse.add_argument("--stock", type=int, default=None, help="the shadow sale's units (default: the sale's)")
        rehearse.add_argument(
            "--against", default=None, metavar="URL", help="a stack by its URL, through its admin API (a staff login)"
        )
        rehearse.add_argument(
            "--tcp",
            nargs="?",
            const="",
            default=None,
            metavar="HOST:PORT",
            help="the crowd buys through the TCP door (default FLASHSALE_REHEARSAL_TCP; with --against its host:8002)",
        )
        rehearse.add_argument(
            "--operator",
            default=None,
            help="the staff username: with --against, logged in with FLASHSALE_OPERATOR_PASSWORD (or "
            "FLASHSALE_OPERATOR_TOKEN, a token); on this stack, who asked",
        )
        rehearse.add_argument("--target-p99-ms", type=float, default=500.0, help="the shoppers' p99 at most (500)")
        rehearse.add_argument(
            "--target-sell-out-s", type=float, default=None, help="sold out within this many seconds (default: none)"
        )
        rehearse.add_argument("--allow-errors", action="store_true", help="do not fail on errors (5xx, refused)")
        shoppers = commands.add_parser(
            "shoppers", help="create N shoppers at once and print their usernames and tokens (load tests)"
        )
        shoppers.add_argument("count", type=int)
        shoppers.add_argument("--prefix", default="", help="usernames are <prefix>-<n> (default: random)")
        shoppers.add_argument("--password", default=None, help="let them log in with it too (default: no password)")
        shoppers.add_argument("--email-domain", default="example.com", help="their addresses: <username>@<domain>")
        deactivate = commands.add_parser(
            "deactivate", help="lock a user out: inactive, every token and session refused within a second"
        )
        deactivate.add_argument("user", help="username or user id")
        admin = commands.add_parser(
            "admin", help="create the site's administrator, or give it a new password (printed once)"
        )
        admin.add_argument("username")
        admin.add_argument("--email", default="", help="its email address")
        admin.add_argument(
            "--password-stdin", action="store_true", help="read the password from standard input (default: random)"
        )
        capacity = commands.add_parser(
            "capacity", help="web nodes, Redis masters and workers a sale needs (docs/scale-out.md)"
        )
        capacity.add_argument("--users", type=int, required=True, help="shoppers pressing Buy")
        capacity.add_argument("--peak-seconds", type=float, default=1.0, help="over how long (default 1)")
        capacity.add_argument("--attempts-per-user", type=float, default=1.0, help="presses each (default 1)")
        capacity.add_argument("--stock", type=int, default=10, help="units per sale (default 10)")
        capacity.add_argument("--sales", type=int, default=1, help="hot sales at the same second (default 1)")
        capacity.add_argument("--crowd-factor", type=float, default=2.0, help="the sales' crowd_factor (default 2)")
        capacity.add_argument("--drain-seconds", type=float, default=60.0, help="wins in PostgreSQL within (60)")
        capacity.add_argument("--headroom", type=float, default=0.7, help="share of a measured figure to plan on")
        capacity.add_argument(
            "--results", type=Path, default=settings.BASE_DIR / "bench" / "results", help="make bench's results"
        )
        capacity.add_argument(
            "--replicas", action="store_true", help="also the Kubernetes pods per process (deploy/k8s/)"
        )
        for sub in commands.choices.values():
            sub.add_argument("--json", action="store_true", help="print JSON")
        self._webhooks_arguments(commands)

    def _webhooks_arguments(self, commands: Any) -> None:
        webhooks = commands.add_parser("webhooks", help="the endpoints signed webhooks go to (docs/operating.md)")
        actions = webhooks.add_subparsers(
            dest="webhooks_action", required=True, metavar="add|list|remove|rotate|resume|replay"
        )
        add = actions.add_parser("add", help="register an endpoint: its URL is resolved and checked now")
        add.add_argument("url")
        add.add_argument("--events", required=True, help="comma-separated: " + ",".join(WebhookEventType.values))
        add.add_argument("--secret", default=None, help="whsec_<base64 of 24-64 bytes> (default: one is made)")
        add.add_argument(
            "--allow-private",
            action="store_true",
            help="may reach a loopback, link-local or private address (needs WEBHOOKS_ALLOW_PRIVATE_OPT_IN)",
        )
        add.add_argument("--payments", action="store_true", help="its secret signs the shop's payment callbacks")
        add.add_argument("--description", default="")
        actions.add_parser("list", help="every endpoint, its state and its pending and dead deliveries")
        remove = actions.add_parser("remove", help="delete an endpoint and its deliveries")
        remove.add_argument("endpoint", type=int, help="endpoint id (see list)")
        rotate = actions.add_parser("rotate", help="a new secret; the old one stays valid for the overlap")
        rotate.add_argument("endpoint", type=int)
        rotate.add_argument("--secret", default=None, help="the new whsec_ secret (default: one is made)")
        rotate.add_argument("--overlap", type=float, default=None, help="seconds the old secret stays valid")
        resume = actions.add_parser("resume", help="deliver to a paused endpoint again, what waited first")
        resume.add_argument("endpoint", type=int)
        replay = actions.add_parser("replay", help="send an endpoint's dead letters again (same webhook-id)")
        replay.add_argument("endpoint", type=int)
        for sub in actions.choices.values():
            sub.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        try:
            result = getattr(self, f"_{action}")(options)
        except ApplicationError as error:
            raise CommandError(error.detail) from None
        except RedisUnavailable as error:
            raise CommandError(f"Redis is unreachable: {error}") from None
        if options["json"]:
            self.stdout.write(json.dumps(result, indent=2, default=str))
        if action == "rehearse" and not result.get("passed"):
            raise CommandError(f"Rehearsal {result.get('rehearsal_id')} failed: {_failures(result)}")

    def _say(self, options: dict[str, Any], line: str) -> None:
        if not options["json"]:
            self.stdout.write(line)

    def _sale(self, ref: str) -> FlashSale:
        sale = (
            FlashSale.objects.select_related("product").filter(pk=int(ref)).first()
            if ref.isdigit()
            else sale_newest_for_product(ref)
        )
        if sale is None:
            raise CommandError(f"No sale {ref!r} (give a sale id or a product slug).")
        return sale

    def _init(self, options: dict[str, Any]) -> dict[str, Any]:
        if options["stock"] < 1:
            raise CommandError("Stock must be at least 1.")
        if options["duration"] < 1:
            raise CommandError("Duration must be at least 1 second.")
        slug = options["product"]
        product = Product.objects.filter(slug=slug).first()
        if product is None:
            list_price = options["list_price"] or options["price"] * 10
            product = product_create(slug=slug, name=slug.replace("-", " ").title(), list_price=list_price)
            self._say(options, f"Created product {product.slug!r} ({product.name}).")
        now = timezone.now()
        zone = options["tz"] or shop_zone()
        if options["starts_at"] is not None:
            try:
                starts_at = wall_time_to_utc(options["starts_at"], zone)
            except WallTimeInvalid as error:
                raise CommandError(str(error)) from None
        else:
            if options["tz"] is not None:
                raise CommandError("--tz names the zone of --starts-at; give --starts-at too.")
            starts_at = now + timedelta(seconds=60 if options["starts_in"] is None else options["starts_in"])
        queued = options["admission"] == Admission.QUEUE
        if not queued and (
            options["pre_queue_opens_in"] is not None or options["shuffle_pre_queue"] or options["serving_rate"]
        ):
            raise CommandError("--pre-queue-opens-in, --shuffle-pre-queue and --serving-rate need --admission queue.")
        opens_at = None
        if options["pre_queue_opens_in"] is not None:
            opens_at = now + timedelta(seconds=options["pre_queue_opens_in"])
            if opens_at > starts_at:
                raise CommandError("The line must open by the start: --pre-queue-opens-in at most the start.")
        sale = sale_create(
            product=product,
            price=options["price"],
            total_stock=options["stock"],
            starts_at=starts_at,
            ends_at=starts_at + timedelta(seconds=options["duration"]),
            pow_difficulty=options["pow_difficulty"],
            bucket_capacity=options["bucket_capacity"],
            bucket_refill_per_second=options["bucket_refill"],
            admission=options["admission"],
            pre_queue_opens_at=opens_at,
            shuffle_pre_queue=options["shuffle_pre_queue"],
            serving_rate=options["serving_rate"],
        )
        sale_warm(sale=sale)
        self._say(options, f"Sale {sale.pk}: {sale}")
        starts, ends = wall_time_label(sale.starts_at, zone), wall_time_label(sale.ends_at, zone)
        self._say(options, f"  window   {starts} .. {ends}")
        self._say(options, f"           {sale.starts_at.isoformat()} .. {sale.ends_at.isoformat()} (UTC)")
        if queued:
            rate = f"{sale.serving_rate}/s" if sale.serving_rate else "auto (from the units left)"
            opens = sale.pre_queue_opens_at.isoformat() if sale.pre_queue_opens_at else "at the start"
            shuffled = ", shuffled at the start" if sale.shuffle_pre_queue else ""
            self._say(options, f"  queue    the line opens {opens}{shuffled}; serving rate {rate}")
        self._say(options, "  loaded into Redis; purchases open at the start second.")
        return {
            "sale_id": sale.pk,
            "product": product.slug,
            "starts_at": sale.starts_at.isoformat(),
            "ends_at": sale.ends_at.isoformat(),
            "time_zone": zone.key,
            "starts_at_wall": wall_time_label(sale.starts_at, zone),
            "admission": sale.admission,
            "pre_queue_opens_at": sale.pre_queue_opens_at.isoformat() if sale.pre_queue_opens_at else None,
            "shuffle_pre_queue": sale.shuffle_pre_queue,
            "serving_rate": sale.serving_rate or "auto",
        }

    def _status(self, options: dict[str, Any]) -> dict[str, Any]:
        sale = self._sale(options["sale"])
        report = sale_reconcile(sale_id=sale.pk, repair=False, full=True, drain=False)
        status = sale.status_at(timezone.now(), remaining_stock=report.remaining if report.loaded else sale.total_stock)
        stats = inventory.sale_stats(sale.pk) if report.loaded else {}
        result = {
            "sale_id": sale.pk,
            "product": sale.product.slug,
            "status": status.value,
            "loaded": report.loaded,
            "total_stock": sale.total_stock,
            "remaining_stock": report.remaining,
            "buyers": report.buyers,
            "orders_in_postgresql": Order.objects.filter(sale=sale).count(),
            "backlog": report.backlog,
            "i1": report.i1_holds,
            "i2": report.i2_holds,
            "mismatches": report.unexplained,
            "answers": stats,
        }
        self._say(options, f"Sale {sale.pk}: {sale}")
        self._say(options, f"  status        {status.label}")
        if not report.loaded:
            self._say(options, "  not loaded into Redis (warm it from the admin, or wait for beat)")
            return result
        self._say(options, f"  remaining     {report.remaining} of {report.total}")
        self._say(options, f"  buyers        {report.buyers}")
        self._say(options, f"  orders (PG)   {result['orders_in_postgresql']}")
        self._say(options, f"  backlog       {report.backlog}")
        self._say(options, f"  I1 stock      {'holds' if report.i1_holds else 'BROKEN'}")
        i2 = {True: "holds", False: "BROKEN", None: "not judged: orders still waiting"}[report.i2_holds]
        self._say(options, f"  I2 orders     {i2}")
        for line in report.unexplained:
            self._say(options, f"    - {line}")
        if stats:
            self._say(options, "  answers       " + ", ".join(f"{k} {v}" for k, v in sorted(stats.items())))
        return result

    def _capacity(self, options: dict[str, Any]) -> dict[str, Any]:
        if not 0 < options["headroom"] <= 1:
            raise CommandError("Headroom is a share: more than 0, at most 1.")
        demand = Demand(
            users=options["users"],
            peak_seconds=options["peak_seconds"],
            attempts_per_user=options["attempts_per_user"],
            stock=options["stock"],
            sales=options["sales"],
            crowd_factor=options["crowd_factor"],
            drain_seconds=options["drain_seconds"],
            headroom=options["headroom"],
        )
        figures = figures_from_results(options["results"])
        try:
            plan = capacity_plan(demand, figures)
        except ValueError as error:
            raise CommandError(str(error)) from None
        self._say(
            options,
            f"{plan.web_nodes} web node(s), {plan.redis_masters} Redis master(s) with "
            f"{plan.redis_replicas} replica(s), {plan.workers} Celery worker(s)",
        )
        for line in plan.lines:
            self._say(options, f"  {line.value:>12,.0f}  {line.what}")
            self._say(options, f"                {line.assumption}")
        for warning in plan.warnings:
            self._say(options, f"  WARNING: {warning}")
        pods = replicas_for(plan, demand)
        if options["replicas"]:
            self._say(options, f"Kubernetes pods (deploy/k8s/; autoscalers aim at {pods.target_cpu_percent}% CPU):")
            for name, size in POD_SIZES.items():
                self._say(
                    options,
                    f"  {name:<7} {pods.minimum[name]:>4} to {pods.maximum[name]:>4}  "
                    f"({size.cpu} CPU, {size.memory} each: {size.why})",
                )
        return {
            "replicas": {
                "minimum": pods.minimum,
                "maximum": pods.maximum,
                "target_cpu_percent": pods.target_cpu_percent,
            },
            "web_nodes": plan.web_nodes,
            "redis_masters": plan.redis_masters,
            "redis_replicas": plan.redis_replicas,
            "workers": plan.workers,
            "lines": [asdict(line) for line in plan.lines],
            "warnings": plan.warnings,
            "figures": asdict(figures),
        }

    def _webhooks(self, options: dict[str, Any]) -> dict[str, Any]:
        action = options["webhooks_action"]
        if action == "add":
            endpoint = endpoint_add(
                url=options["url"],
                events=options["events"].split(","),
                secret=options["secret"],
                allow_private=options["allow_private"],
                payments=options["payments"],
                description=options["description"],
            )
            self._say(options, f"Endpoint {endpoint.pk}: {endpoint.url}")
            self._say(options, f"  events   {', '.join(endpoint.events)}")
            if not options["secret"]:
                self._say(options, f"  secret   {endpoint.secret} (made now; shown once)")
            return {**self._endpoint_row(endpoint, {}), "secret": endpoint.secret}
        if action == "list":
            backlog = endpoints_backlog()
            rows = [self._endpoint_row(endpoint, backlog) for endpoint in WebhookEndpoint.objects.all()]
            if not rows:
                self._say(options, "No webhook endpoint.")
            for row in rows:
                self._say(options, f"{row['id']:>4}  {row['url']}")
                self._say(
                    options, f"      events {', '.join(row['events'])}{'; reports payments' if row['payments'] else ''}"
                )
                self._say(options, f"      {row['state']}; {row['pending']} pending, {row['dead']} dead")
            return {"endpoints": rows}
        found = WebhookEndpoint.objects.filter(pk=options["endpoint"]).first()
        if found is None:
            raise CommandError(f"No webhook endpoint {options['endpoint']} (see: flashsale webhooks list).")
        endpoint = found
        if action == "remove":
            dropped = endpoint_remove(endpoint=endpoint)
            self._say(options, f"Endpoint {options['endpoint']} removed, with {dropped} delivery record(s).")
            return {"id": options["endpoint"], "deliveries_dropped": dropped}
        if action == "rotate":
            endpoint_rotate(endpoint=endpoint, secret=options["secret"], overlap_seconds=options["overlap"])
            self._say(options, f"Endpoint {endpoint.pk}: new secret {endpoint.secret}")
            self._say(options, f"  the old one signs and verifies too until {endpoint.previous_secret_until}")
            return {"id": endpoint.pk, "secret": endpoint.secret, "previous_until": endpoint.previous_secret_until}
        if action == "resume":
            chains = endpoint_resume(endpoint=endpoint)
            self._say(options, f"Endpoint {endpoint.pk} resumed; deliveries of {chains} order(s) sent.")
            return {"id": endpoint.pk, "orders": chains}
        dead = WebhookDelivery.objects.filter(endpoint=endpoint, status=DeliveryStatus.DEAD)
        replayed = deliveries_replay(delivery_ids=list(dead.values_list("pk", flat=True)))
        self._say(options, f"Endpoint {endpoint.pk}: {replayed} dead letter(s) sent again.")
        return {"id": endpoint.pk, "replayed": replayed}

    @staticmethod
    def _endpoint_row(endpoint: WebhookEndpoint, backlog: dict[int, dict[str, int]]) -> dict[str, Any]:
        if endpoint.paused_at is not None:
            state = f"PAUSED since {endpoint.paused_at.isoformat()}: {endpoint.pause_reason}"
        elif endpoint.failing_since is not None:
            state = f"failing ({endpoint.consecutive_failures} in a row since {endpoint.failing_since.isoformat()})"
        else:
            state = "delivering"
        counts = backlog.get(endpoint.pk, {})
        return {
            "id": endpoint.pk,
            "url": endpoint.url,
            "events": endpoint.events,
            "payments": endpoint.payments,
            "allow_private": endpoint.allow_private,
            "paused": endpoint.paused_at is not None,
            "state": state,
            "pending": counts.get("pending", 0),
            "dead": counts.get("dead", 0),
        }

    def _buyers(self, options: dict[str, Any]) -> dict[str, Any]:
        sale = self._sale(options["sale"])
        buyers = inventory.sale_buyers(sale.pk)
        self._say(options, f"Sale {sale.pk}: {len(buyers)} buyer(s)")
        for user_id, order_id in sorted(buyers.items()):
            self._say(options, f"  user {user_id:>8}  order {order_id}")
        return {"sale_id": sale.pk, "buyers": {str(user): order for user, order in buyers.items()}}

    def _reset(self, options: dict[str, Any]) -> dict[str, Any]:
        sale = self._sale(options["sale"])
        result = sale_reset(sale=sale, force=options["force"])
        log_entries_deleted = sale_log_delete(sale_id=sale.pk)
        orders_deleted = sale_orders_delete(sale=sale) if options["delete_orders"] else 0
        self._say(options, f"Sale {sale.pk}: deleted {result.redis_keys_deleted} Redis key(s)")
        if log_entries_deleted:
            self._say(options, f"  and its transparency log ({log_entries_deleted} entries): it starts again at 0")
        if options["delete_orders"]:
            self._say(options, f"  and {orders_deleted} order(s) in PostgreSQL")
        self._say(options, "  warm it again (admin action, or beat within its lead time) to sell.")
        return {
            "sale_id": sale.pk,
            "redis_keys_deleted": result.redis_keys_deleted,
            "log_entries_deleted": log_entries_deleted,
            "orders_deleted": orders_deleted,
        }

    def _export(self, options: dict[str, Any]) -> dict[str, Any]:
        sale = self._sale(options["sale"])
        if sale.is_shadow:
            raise CommandError(f"Sale {sale.pk} is a rehearsal's shadow sale: its orders are not exported.")
        orders = orders_for_export(sale_ids=[sale.pk])
        output: Path | None = options["output"]
        if output is None:
            if options["json"]:
                raise CommandError("--json prints a summary of the export; give --output FILE for the orders.")
            orders_export_write(orders, form=options["format"], write=lambda piece: self.stdout.write(piece, ending=""))
            return {}
        with output.open("w", encoding="utf-8", newline="") as out:
            count = orders_export_write(orders, form=options["format"], write=out.write)
        self._say(options, f"Sale {sale.pk}: {count} order(s) written to {output} ({options['format']}).")
        return {"sale_id": sale.pk, "orders": count, "format": options["format"], "output": str(output)}

    def _rehearse(self, options: dict[str, Any]) -> dict[str, Any]:
        targets = Targets(
            p99_ms=options["target_p99_ms"],
            sell_out_seconds=options["target_sell_out_s"],
            zero_errors=not options["allow_errors"],
        )
        against: str | None = options["against"]
        tcp: str | None = options["tcp"]
        stage: StageClient
        if against is None:
            sale = self._sale(options["sale"])
            operator = None
            if options["operator"]:
                operator = get_user_model().objects.filter(username=options["operator"], is_staff=True).first()
                if operator is None:
                    raise CommandError(f"No staff user {options['operator']!r}.")
            stage = LocalStage(requested_by_id=operator.pk if operator is not None else None)
            sale_id, crowd_url = sale.pk, settings.FLASHSALE_REHEARSAL_URL
            if tcp == "":
                tcp = settings.FLASHSALE_REHEARSAL_TCP
        else:
            if not options["sale"].isdigit():
                raise CommandError("With --against, name the sale by its id.")
            sale_id, crowd_url = int(options["sale"]), against
            if tcp == "":
                tcp = f"{urlsplit(against).hostname}:8002"
            stage = asyncio.run(self._remote_stage(against, options["operator"]))
        self._say(options, f"Rehearsing sale {sale_id} against {crowd_url}{f' (TCP door {tcp})' if tcp else ''} ...")

        async def rehearse() -> dict[str, Any]:
            try:
                return await rehearsal_drive(
                    stage,
                    crowd_url=crowd_url,
                    sale_id=sale_id,
                    shoppers=options["shoppers"],
                    attempts=options["attempts"],
                    stock=options["stock"],
                    targets=targets,
                    tcp=tcp,
                    say=lambda line: self._say(options, line),
                )
            finally:
                await stage.close()

        report = asyncio.run(rehearse())
        for line in report_lines(report):
            self._say(options, line)
        return report

    async def _remote_stage(self, against: str, username: str | None) -> ApiStage:
        token = os.environ.get("FLASHSALE_OPERATOR_TOKEN")
        if token:
            return ApiStage(against, token=token)
        if not username:
            raise CommandError(
                "With --against, give --operator (and FLASHSALE_OPERATOR_PASSWORD) or FLASHSALE_OPERATOR_TOKEN."
            )
        password = os.environ.get("FLASHSALE_OPERATOR_PASSWORD") or getpass.getpass(f"{username}'s password: ")
        return await ApiStage.logged_in(against, username=username, password=password)

    def _shoppers(self, options: dict[str, Any]) -> dict[str, Any]:
        if not 1 <= options["count"] <= 1_000_000:
            raise CommandError("Count is between 1 and 1,000,000.")
        try:
            issued = shoppers_create(
                count=options["count"],
                prefix=options["prefix"],
                password=options["password"],
                email_domain=options["email_domain"],
            )
        except IntegrityError:
            raise CommandError(f"A username with prefix {options['prefix']!r} is taken; choose another.") from None
        self._say(options, f"Created {len(issued)} shopper(s), {issued[0].username} .. {issued[-1].username}.")
        self._say(options, f"  their tokens expire at {issued[0].expires_at} (Unix time); --json prints them.")
        return {
            "shoppers": [
                {"id": one.user_id, "username": one.username, "token": one.token, "expires_at": one.expires_at}
                for one in issued
            ]
        }

    def _admin(self, options: dict[str, Any]) -> dict[str, Any]:
        password = None
        if options["password_stdin"]:
            password = sys.stdin.readline().rstrip("\n")
            if not password:
                raise CommandError("No password on standard input.")
        account = admin_password_set(username=options["username"], email=options["email"], password=password)
        self._say(
            options, f"Administrator {account.username!r} {'created' if account.created else 'password changed'}."
        )
        if password is None:
            self._say(options, f"  password: {account.password}")
            self._say(options, "  shown once: keep it in a password manager; run this again to change it.")
        if not account.created:
            self._say(options, "  its earlier sessions and tokens are refused from now on.")
        return {
            "username": account.username,
            "created": account.created,
            "password": account.password if password is None else None,
        }

    def _deactivate(self, options: dict[str, Any]) -> dict[str, Any]:
        reference = options["user"]
        users = get_user_model().objects
        user = users.filter(username=reference).first()
        if user is None and reference.isdigit():
            user = users.filter(pk=int(reference)).first()
        if user is None:
            raise CommandError(f"No user {reference!r} (give a username or a user id).")
        was_active = user.is_active
        revoked_at_ms = user_deactivate(user=user)
        self._say(options, f"User {user.pk} ({user.get_username()}): inactive{'' if was_active else ' (already)'}.")
        self._say(options, "  every token and session they hold is refused by every process within a second.")
        return {
            "user_id": user.pk,
            "username": user.get_username(),
            "was_active": was_active,
            "revoked_at_ms": revoked_at_ms,
        }
