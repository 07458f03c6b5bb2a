"""The benchmark's two baselines, served by the same server and settings as the shop.

- ``control``: a bare Django JSON view, the ceiling of any view on this stack.
- ``purchase``: the naive shop (``services.naive_purchase``), a plain function view.

Both authenticate nothing more than they must: ``purchase`` identifies the caller exactly as
the real purchase API does (``request_user_id``, no SQL once warm), so what differs from the
real shop is only how the stock is kept.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts.selectors import request_user_id
from core.errors import ApplicationError, NotFound, error_json_response

from .models import NaiveStock
from .services import NaiveStatus, naive_purchase

_HTTP_STATUS = {NaiveStatus.SUCCESS: 201, NaiveStatus.SOLD_OUT: 409, NaiveStatus.ALREADY_PURCHASED: 409}


@csrf_exempt
def control(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "OK"})


@csrf_exempt
@require_POST
def purchase(request: HttpRequest, stock_id: int) -> HttpResponse:
    try:
        user_id = request_user_id(request)
        answer = naive_purchase(stock_id=stock_id, user_id=user_id)
    except ApplicationError as error:
        return error_json_response(error)
    except NaiveStock.DoesNotExist:
        return error_json_response(NotFound("There is no such stock."))
    body: dict[str, object] = {"status": answer.status.value}
    if answer.order_id is not None:
        body["order_id"] = answer.order_id
    if answer.remaining_stock is not None:
        body["remaining_stock"] = answer.remaining_stock
    return JsonResponse(body, status=_HTTP_STATUS[answer.status])
