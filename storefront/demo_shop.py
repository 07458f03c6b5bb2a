"""The demo shop ``make run`` serves beside the storefront (``FLASHSALE_DEMO_SHOP``, which
only the local settings turn on): the shop's own side of the payment step and of the
webhooks, so a winner can pay end to end on one machine.

- ``/demo-shop/checkout/`` is the hosted checkout the pay link sends the winner to. Paying
  (or declining) there reports the outcome with the signed callback
  ``POST /api/orders/<id>/payment/``, signed with ``FLASHSALE_DEMO_SHOP_SECRET``, then sends
  the winner back to their order page.
- ``/demo-shop/webhooks/`` receives the shop's webhooks, checks each signature with the same
  secret and appends one JSON line per delivery to ``FLASHSALE_DEMO_SHOP_LOG``, marking a
  ``webhook-id`` it has seen before as a repeat. ``GET`` shows the log.

``manage.py demo`` registers the receiver as an endpoint with that secret.
"""

from __future__ import annotations

import fcntl
import json
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods
from standardwebhooks import Webhook, WebhookVerificationError

from orders.models import new_webhook_id

CALLBACK_TIMEOUT_SECONDS = 10.0


def _enabled() -> None:
    if not settings.FLASHSALE_DEMO_SHOP or not settings.FLASHSALE_DEMO_SHOP_SECRET:
        raise Http404("The demo shop is off.")


def payment_callback_signed(*, body: str, msg_id: str | None = None, at: datetime | None = None) -> dict[str, str]:
    """The Standard Webhooks headers for a payment callback body, as the shop signs it."""
    msg_id = msg_id or new_webhook_id()
    at = (at or datetime.now(tz=UTC)).replace(microsecond=0)
    return {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(settings.FLASHSALE_DEMO_SHOP_SECRET).sign(msg_id=msg_id, timestamp=at, data=body),
    }


@require_http_methods(["GET", "POST"])
def checkout(request: HttpRequest) -> HttpResponse:
    _enabled()
    source = request.POST if request.method == "POST" else request.GET
    order_id = source.get("order_id", "")
    reference = source.get("reference", "")
    return_url = source.get("return_url", "")
    try:
        uuid.UUID(order_id)
    except ValueError:
        return render(request, "demo_shop/checkout.html", {"problem": "This checkout link names no order."}, status=400)
    context = {
        "order_id": order_id,
        "reference": reference,
        "return_url": return_url,
        "amount": source.get("amount", ""),
    }
    if request.method == "GET":
        return render(request, "demo_shop/checkout.html", context)
    outcome = "paid" if request.POST.get("outcome") == "paid" else "failed"
    body = json.dumps({"outcome": outcome, "reference": reference}, separators=(",", ":"))
    callback = request.build_absolute_uri(reverse("api-order-payment", args=[order_id]))
    sent = urllib.request.Request(
        callback, data=body.encode(), headers=payment_callback_signed(body=body), method="POST"
    )
    try:
        with urllib.request.urlopen(sent, timeout=CALLBACK_TIMEOUT_SECONDS) as answer:
            status = answer.status
            said = json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as refused:
        status = refused.code
        said = json.loads(refused.read() or b"{}")
    if status != 200:
        context["problem"] = (
            f"The shop refused the payment report ({status} {said.get('status')}): {said.get('detail')}"
        )
        return render(request, "demo_shop/checkout.html", context, status=200)
    if url_has_allowed_host_and_scheme(return_url, allowed_hosts={request.get_host()}):
        return HttpResponseRedirect(return_url)
    return HttpResponseRedirect(reverse("storefront-order", args=[order_id]))


def _log_path() -> Path:
    path = Path(settings.FLASHSALE_DEMO_SHOP_LOG)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@csrf_exempt
@require_http_methods(["GET", "POST"])
def webhooks(request: HttpRequest) -> HttpResponse:
    _enabled()
    path = _log_path()
    if request.method == "GET":
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        return HttpResponse(text or "No webhook received yet.\n", content_type="text/plain; charset=utf-8")
    try:
        event = Webhook(settings.FLASHSALE_DEMO_SHOP_SECRET).verify(request.body, dict(request.headers))
    except (WebhookVerificationError, ValueError):
        return HttpResponse("bad signature\n", status=401, content_type="text/plain")
    msg_id = request.headers["webhook-id"]
    order = (event.get("data") or {}).get("order") or {}
    # Two web workers may receive at once: the scan for repeats and the append are one step.
    with path.open("a+", encoding="utf-8") as log:
        fcntl.flock(log, fcntl.LOCK_EX)
        log.seek(0)
        seen = any(json.loads(line).get("webhook_id") == msg_id for line in log if line.strip())
        line = {
            "received_at": datetime.now(tz=UTC).isoformat(),
            "webhook_id": msg_id,
            "type": event.get("type"),
            "order_id": order.get("id"),
            "status": order.get("status"),
            "signature": "verified",
            "repeat": seen,
        }
        log.write(json.dumps(line) + "\n")
    return HttpResponse(status=204)
