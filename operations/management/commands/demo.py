"""``manage.py demo``: the demo admin, a demo shopper and a demo sale that opens soon, and,
where the demo shop is on (the local settings), its webhook receiver as an endpoint.

Run by ``make run`` on every start. Accounts are created once; their passwords are kept in
``--password-file`` so a second run prints the same ones. A new demo sale is scheduled only
when no demo sale is upcoming or live. The demo shop's endpoint is registered once, and its
secret and events are brought in line on each run.
"""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from orders.models import WebhookEndpoint, WebhookEventType
from orders.webhooks import endpoint_add
from sales.models import FlashSale, Product
from sales.services import product_create, sale_create
from sales.warming import sale_warm

DEMO_PRODUCT: dict[str, Any] = {
    "slug": "aurora-x1",
    "name": "Aurora X1 smartphone",
    "list_price": Decimal("799.00"),
    "description": "6.4-inch OLED, 256 GB, all-day battery. Ten units at one dollar, one per shopper.",
    "image_url": "storefront/phone.svg",
}


class Command(BaseCommand):
    help = "Create the demo admin, shopper and sale (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--starts-in", type=int, default=120, help="seconds until a new demo sale opens")
        parser.add_argument("--duration", type=int, default=3600, help="seconds a new demo sale stays open")
        parser.add_argument("--stock", type=int, default=10)
        parser.add_argument("--pow-difficulty", type=int, default=12)
        parser.add_argument("--password-file", type=Path, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        passwords = self._accounts(options["password_file"])
        for username, password in passwords.items():
            shown = password or f"(unchanged; set it with: manage.py changepassword {username})"
            self.stdout.write(f"[demo] login {username} / {shown}")

        product = Product.objects.filter(slug=DEMO_PRODUCT["slug"]).first() or product_create(**DEMO_PRODUCT)
        now = timezone.now()
        sale = FlashSale.objects.filter(product=product, ends_at__gt=now).order_by("starts_at").first()
        if sale is None:
            sale = sale_create(
                product=product,
                price=Decimal("1.00"),
                total_stock=options["stock"],
                starts_at=now + timedelta(seconds=options["starts_in"]),
                ends_at=now + timedelta(seconds=options["starts_in"] + options["duration"]),
                pow_difficulty=options["pow_difficulty"],
            )
            self.stdout.write(f"[demo] scheduled sale {sale.pk}: {sale}")
        else:
            self.stdout.write(f"[demo] reusing sale {sale.pk}: {sale}")
        sale_warm(sale=sale)
        self.stdout.write(f"[demo] sale page: /sales/{sale.pk}/")
        if settings.FLASHSALE_DEMO_SHOP and settings.FLASHSALE_SITE_URL:
            self._demo_shop_endpoint()

    def _demo_shop_endpoint(self) -> None:
        url = settings.FLASHSALE_SITE_URL.rstrip("/") + "/demo-shop/webhooks/"
        events = list(WebhookEventType.values)
        endpoint = WebhookEndpoint.objects.filter(url=url).first()
        if endpoint is None:
            endpoint = endpoint_add(
                url=url,
                events=events,
                secret=settings.FLASHSALE_DEMO_SHOP_SECRET,
                allow_private=True,
                payments=True,
                description="make run's demo shop",
            )
        else:
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
                secret=settings.FLASHSALE_DEMO_SHOP_SECRET, events=events, payments=True, allow_private=True
            )
        self.stdout.write(
            f"[demo] webhooks: endpoint {endpoint.pk} -> {url}; the demo shop logs what it receives to "
            f"{settings.FLASHSALE_DEMO_SHOP_LOG}"
        )

    def _accounts(self, password_file: Path | None) -> dict[str, str]:
        saved: dict[str, str] = {}
        if password_file is not None and password_file.exists():
            saved = json.loads(password_file.read_text(encoding="utf-8"))
        users = get_user_model()
        shown: dict[str, str] = {}
        for username, is_staff in (("admin", True), ("shopper", False)):
            user = users.objects.filter(username=username).first()
            if user is None:
                password = secrets.token_urlsafe(9)
                if is_staff:
                    user = users.objects.create_superuser(username, f"{username}@example.com", password)
                else:
                    user = users.objects.create_user(username, f"{username}@example.com", password)
                saved[username] = password
            shown[username] = saved.get(username, "")
        if password_file is not None:
            password_file.write_text(json.dumps(saved, indent=2), encoding="utf-8")
            password_file.chmod(0o600)
        return shown
