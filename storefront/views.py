"""The server-rendered storefront: the list of sales, a sale's product page, the shopper's
orders. Thin views: reads come from the selectors; the live parts of the product page come
from the WebSocket (``wsdoor.consumers``) and the REST API, driven by
``static/storefront/sale-page.js``."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import ensure_csrf_cookie

from orders.selectors import orders_of_user
from sales.models import Product, SaleStatus
from sales.selectors import SaleView, sale_detail, sale_list

PLACEHOLDER_IMAGE = "storefront/placeholder.svg"


def product_image_src(product: Product) -> str:
    """``image_url`` is an absolute URL, a site path, or a path under ``static/``."""
    image = product.image_url.strip()
    if not image:
        return static(PLACEHOLDER_IMAGE)
    if image.startswith(("http://", "https://", "/")):
        return image
    return static(image)


def _card(view: SaleView) -> dict[str, Any]:
    return {"view": view, "image_src": product_image_src(view.sale.product)}


def home(request: HttpRequest) -> HttpResponse:
    """Live sales first, then upcoming ones; sales that ended are left out."""
    views = [view for view in sale_list() if view.status != SaleStatus.ENDED]
    live = [_card(view) for view in views if view.status in (SaleStatus.LIVE, SaleStatus.SOLD_OUT)]
    upcoming = [_card(view) for view in views if view.status == SaleStatus.SCHEDULED]
    return render(request, "storefront/home.html", {"live_sales": live, "upcoming_sales": upcoming})


def socket_url(request: HttpRequest, sale_id: int) -> str:
    """Where the page opens its WebSocket; empty ``FLASHSALE_WS_URL`` means the page's host."""
    path = f"/ws/sales/{sale_id}/"
    base = settings.FLASHSALE_WS_URL.rstrip("/")
    if base:
        return base + path
    scheme = "wss" if request.is_secure() else "ws"
    return f"{scheme}://{request.get_host()}{path}"


@ensure_csrf_cookie
def sale_page(request: HttpRequest, sale_id: int) -> HttpResponse:
    view = sale_detail(sale_id)
    if view is None:
        raise Http404("There is no such sale.")
    sale = view.sale
    page_url = reverse("storefront-sale", args=[sale.pk])
    config = {
        "sale_id": sale.pk,
        "starts_at": sale.starts_at.isoformat(),
        "ends_at": sale.ends_at.isoformat(),
        "server_time": timezone.now().isoformat(),
        "remaining_stock": view.remaining_stock,
        "status": view.status.value,
        "pow_difficulty": sale.pow_difficulty,
        "admission": sale.admission,
        "line_opens_at": (sale.pre_queue_opens_at or sale.starts_at).isoformat(),
        "shuffle_pre_queue": sale.shuffle_pre_queue,
        "turn_seconds": settings.FLASHSALE_QUEUE_TURN_SECONDS,
        # The waiting room keeps a pass per sale and shopper (another may log in on the tab).
        "shopper": request.user.pk if request.user.is_authenticated else None,
        "socket_url": socket_url(request, sale.pk),
        "sale_api_url": reverse("api-sale", args=[sale.pk]),
        "challenge_url": reverse("api-challenge", args=[sale.pk]),
        "purchase_url": reverse("api-purchase", args=[sale.pk]),
        "queue_url": reverse("api-queue", args=[sale.pk]),
        "orders_url": reverse("storefront-orders"),
        "login_url": redirect_to_login(page_url).url,
        # The page prefers the csrftoken cookie (another tab may have rotated it at login).
        "csrf_token": get_token(request),
    }
    context = {
        "view": view,
        "sale": sale,
        "product": sale.product,
        "image_src": product_image_src(sale.product),
        "login_url": config["login_url"],
        "config": config,
    }
    return render(request, "storefront/sale.html", context)


@login_required
def orders_page(request: HttpRequest) -> HttpResponse:
    """The shopper's orders. A unit won a moment ago may not have reached PostgreSQL yet
    (a Celery worker writes it); ``?order=<id>`` names it so the page can say so."""
    orders = list(orders_of_user(user_id=request.user.pk or 0))  # login_required: never 0
    try:
        awaited = str(uuid.UUID(request.GET.get("order", "")))
    except ValueError:
        awaited = ""
    if any(str(order.id) == awaited for order in orders):
        awaited = ""
    return render(request, "storefront/orders.html", {"orders": orders, "awaited_order": awaited})
