"""The server-rendered storefront: the list of sales, a sale's product page, the shopper's
orders. Thin views: reads come from the selectors; the live parts of the product page come
from the WebSocket (``wsdoor.consumers``) and the REST API, driven by
``static/storefront/sale-page.js``."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import ensure_csrf_cookie

from orders.models import Order, OrderStatus
from orders.payments import payment_deadline, payment_provider, payment_reference
from orders.selectors import HeldOrder, order_held_in_sale, order_of_user, orders_of_user
from salelog import verify
from salelog.selectors import shopper_win_entry
from sales.models import Product, SaleStatus
from sales.receipts import receipt_for, shopper_hash
from sales.selectors import SaleView, sale_detail, sale_list

PLACEHOLDER_IMAGE = "storefront/placeholder.svg"


VERIFIER = Path(verify.__file__)
"""The verifier as one file (it imports nothing of the project)."""


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
    held: HeldOrder | None = None
    if request.user.is_authenticated:
        held = order_held_in_sale(user_id=request.user.pk or 0, sale_id=sale.pk, loaded=sale.warmed_at is not None)
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
        "order_url": reverse("storefront-order", args=["00000000-0000-0000-0000-000000000000"]),
        # The win state: the order this shopper holds, on every reload and in every tab (a
        # win in one tab reaches the shopper's other tabs of this sale by "shopper" above).
        "owned_order_id": held.order_id if held else None,
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
        "held": held,
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
    following: list[dict[str, str | None]] = [
        {"order_id": str(order.id), "api_url": reverse("api-order", args=[order.pk]), "status": order.status}
        for order in orders
        if order.status not in FINAL_STATUSES
    ]
    if awaited:
        following.append({"order_id": awaited, "api_url": reverse("api-order", args=[awaited]), "status": None})
    context = {
        "orders": orders,
        "awaited_order": awaited,
        "payments": payment_provider() is not None,
        "orders_config": {"following": following, "server_time": timezone.now().isoformat()},
    }
    return render(request, "storefront/orders.html", context)


FINAL_STATUSES = (OrderStatus.PAID, OrderStatus.EXPIRED, OrderStatus.CANCELLED)


def _order_context(request: HttpRequest, order: Order) -> dict[str, Any]:
    pending = order.status == OrderStatus.PENDING
    deadline = payment_deadline(order) if pending else None
    return {
        "order": order,
        "can_pay": pending and payment_provider() is not None and (deadline is None or deadline > timezone.now()),
        "pay_by": deadline,
        "order_config": {
            "order_id": str(order.id),
            "api_url": reverse("api-order", args=[order.pk]),
            "status": order.status,
            "final": order.status in FINAL_STATUSES,
            "pay_by": deadline.isoformat() if deadline else None,
            "server_time": timezone.now().isoformat(),
        },
    }


@login_required
def order_page(request: HttpRequest, order_id: uuid.UUID) -> HttpResponse:
    """One order: its state followed live, the pay link while it is pending, the time left to
    pay when there is a payment window. An order not in PostgreSQL yet (a win the worker has
    not written) is awaited on the same page, which shows it once it is there; someone else's
    order looks the same, so nothing about it is told."""
    order = order_of_user(user_id=request.user.pk or 0, order_id=str(order_id))
    if order is None:
        awaited = {
            "order_id": str(order_id),
            "api_url": reverse("api-order", args=[order_id]),
            "status": None,
            "final": False,
            "pay_by": None,
            "server_time": timezone.now().isoformat(),
        }
        return render(request, "storefront/order.html", {"awaited_order": str(order_id), "order_config": awaited})
    return render(request, "storefront/order.html", _order_context(request, order))


@login_required
def order_receipt(request: HttpRequest, order_id: uuid.UUID) -> HttpResponse:
    """The order's receipt from the sale's transparency log, to download and verify: the
    same signed receipt the purchase answered (Ed25519 signs deterministically), built from
    the log's entry of the win. 404 until the log holds it (a few seconds after the win)."""
    order = order_of_user(user_id=request.user.pk or 0, order_id=str(order_id))
    if order is None:
        raise Http404("You have no order with this id.")
    entry = shopper_win_entry(sale_id=order.sale_id, shopper=shopper_hash(sale_id=order.sale_id, user_id=order.user_id))
    if entry is None:
        raise Http404("The sale's log does not hold this win yet; try again in a few seconds.")
    receipt = receipt_for(
        sale_id=order.sale_id,
        seq=entry.seq,
        entry=bytes(entry.entry),
        time_ms=int(json.loads(bytes(entry.entry))["time_ms"]),
    )
    response = JsonResponse(receipt, json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="receipt-sale-{order.sale_id}-order-{order.id}.json"'
    return response


def log_verifier(request: HttpRequest) -> HttpResponse:
    """The transparency log's verifier, one file anyone can run (Python and ``cryptography``
    only): ``python verify.py verify <shop URL> <sale> --receipt receipt.json``."""
    response = HttpResponse(VERIFIER.read_bytes(), content_type="text/x-python; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="verify.py"'
    return response


@login_required
def order_pay(request: HttpRequest, order_id: uuid.UUID) -> HttpResponse:
    """The pay link: to the payment provider's checkout, with the order id and a signed
    reference; back to the order page when there is nothing to pay (paid, expired, no
    provider)."""
    order = order_of_user(user_id=request.user.pk or 0, order_id=str(order_id))
    if order is None:
        raise Http404("You have no order with this id.")
    order_url = reverse("storefront-order", args=[order.pk])
    provider = payment_provider()
    deadline = payment_deadline(order)
    if provider is None or order.status != OrderStatus.PENDING or (deadline is not None and deadline <= timezone.now()):
        return HttpResponseRedirect(order_url)
    return HttpResponseRedirect(
        provider.checkout_url(
            order=order, reference=payment_reference(order), return_url=request.build_absolute_uri(order_url)
        )
    )
