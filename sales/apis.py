from __future__ import annotations

import functools
import json
import logging
import time
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import request_user_id
from antibot.challenges import MAX_CHALLENGE_LENGTH
from antibot.idempotency import IdempotentRequest
from antibot.proof_of_work import MAX_SOLUTION_LENGTH
from core.client_address import client_ip
from core.errors import ApplicationError, ErrorSerializer, as_application_error, body_too_large, error_json_response
from core.hot_path import AfterSendResponse, HotPathApi
from core.metrics import purchase_observed
from sales.passes import MAX_PASS_LENGTH

from .models import Admission
from .outcomes import PurchaseAnswer, PurchaseStatus, answer_body
from .purchase import (
    JOIN_FIELDS,
    SaleNotFound,
    drain_kick,
    purchase_attempt,
    purchase_body_parse,
    sale_challenge_issue,
)
from .selectors import sale_detail, sale_list
from .tally import tally
from .waiting_room import PlaceStatus, QueuePassInvalid, place_body, queue_join, queue_place

logger = logging.getLogger(__name__)

SHOPPER_AUTH: list[Any] = [{"tokenAuth": []}, {"cookieAuth": []}]
"""The hot path reads its caller itself (``accounts.selectors.request_user_id``): an access
token, or a session cookie with its CSRF token."""

IDEMPOTENCY_KEY_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"}
"""What ``IdempotentRequest.from_header`` accepts, for the schema."""


class ProductSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    slug = serializers.SlugField()
    name = serializers.CharField()
    description = serializers.CharField()


class SaleSerializer(serializers.Serializer):
    """A sale as the contract shows it."""

    id = serializers.IntegerField(source="sale.id")
    product = ProductSerializer(source="sale.product")
    price = serializers.DecimalField(source="sale.price", max_digits=10, decimal_places=2)
    total_stock = serializers.IntegerField(source="sale.total_stock")
    remaining_stock = serializers.IntegerField()
    starts_at = serializers.DateTimeField(source="sale.starts_at")
    ends_at = serializers.DateTimeField(source="sale.ends_at")
    status = serializers.CharField()
    admission = serializers.ChoiceField(
        source="sale.admission",
        choices=Admission.values,
        help_text="direct: everyone may try at the start; queue: join the line (/queue/) and buy when let in.",
    )
    shuffle_commitment = serializers.CharField(
        help_text="A shuffled pre-queue's: the SHA-256 (hex) of the seed its order follows, published before the "
        "line opens; empty otherwise."
    )
    shuffle_seed = serializers.CharField(
        help_text="That seed, revealed at the start (empty before, and for a sale that does not shuffle)."
    )


class SaleListApi(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(responses={200: SaleSerializer(many=True)}, summary="Upcoming, live and recent sales")
    def get(self, request: Request) -> Response:
        return Response(SaleSerializer(sale_list(), many=True).data)


class SaleDetailApi(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema_serializer(component_name="SaleDetailOutput")
    class OutputSerializer(SaleSerializer):
        server_time = serializers.SerializerMethodField(help_text="The server's clock, to correct a client's.")

        @extend_schema_field(OpenApiTypes.DATETIME)
        def get_server_time(self, view: object) -> str:
            return serializers.DateTimeField().to_representation(timezone.now())

    @extend_schema(responses={200: OutputSerializer, 404: ErrorSerializer}, summary="One sale, with the server's clock")
    def get(self, request: Request, sale_id: int) -> Response:
        view = sale_detail(sale_id)
        if view is None:
            raise SaleNotFound()
        return Response(self.OutputSerializer(view).data)


class PurchaseResponse(AfterSendResponse):
    """A purchase answer (JSON): ``after_send`` runs once the server has sent it."""


@functools.lru_cache(maxsize=256)
def _encoded(status: PurchaseStatus, detail: str, reason: str) -> bytes:
    """The body of an answer that carries nothing of its own request (most of a crowd's "no"
    answers): encoded once per process."""
    return json.dumps(answer_body(PurchaseAnswer(status, detail=detail, reason=reason))).encode()


def _answer_body(answer: PurchaseAnswer) -> bytes:
    if answer.carries_own_body:
        return json.dumps(answer_body(answer)).encode()
    return _encoded(answer.status, answer.detail, answer.reason)


def purchase_answer_response(answer: PurchaseAnswer, *, sale_id: int) -> PurchaseResponse:
    response = PurchaseResponse(_answer_body(answer), status=answer.http_status, content_type="application/json")
    if answer.retry_after_seconds is not None:
        response["Retry-After"] = str(answer.retry_after_seconds)
    if answer.kick_drain:
        response.after_send = lambda: _kick_drain(sale_id)
    return response


def _kick_drain(sale_id: int) -> None:
    try:
        drain_kick(sale_id)
    except Exception:
        logger.warning("could not kick the drain of sale %s; beat will", sale_id, exc_info=True)


class PurchaseApi(HotPathApi):
    """``POST /api/sales/<id>/purchase/``: the hot path (see ``HotPathApi``)."""

    @extend_schema_serializer(component_name="PurchaseInput")
    class InputSerializer(serializers.Serializer):
        challenge = serializers.CharField(required=False, max_length=MAX_CHALLENGE_LENGTH)
        solution = serializers.CharField(required=False, max_length=MAX_SOLUTION_LENGTH)

    # ``pass`` is a Python keyword: the field is declared by name.
    InputSerializer._declared_fields["pass"] = serializers.CharField(
        required=False,
        max_length=MAX_PASS_LENGTH,
        help_text="A queue-mode sale's pass (from joining its line), instead of a proof of work.",
    )

    @extend_schema_serializer(component_name="PurchaseOutput")
    class OutputSerializer(serializers.Serializer):
        status = serializers.CharField()
        detail = serializers.CharField()
        order_id = serializers.UUIDField()
        remaining_stock = serializers.IntegerField()

    @extend_schema_serializer(component_name="PurchaseRateLimited")
    class RateLimitedSerializer(ErrorSerializer):
        reason = serializers.ChoiceField(
            choices=["bucket", "crowd", "user", "ip", "slow"],
            help_text="What said no: the sale's token bucket, stock-aware admission (more shoppers than "
            "units left), your account's or your address's window, or the web server (your address "
            "has its cap of request bodies still arriving).",
        )

    @extend_schema_serializer(component_name="PurchaseRejected")
    class RejectedSerializer(ErrorSerializer):
        order_id = serializers.UUIDField(required=False, help_text="ALREADY_PURCHASED: the order held.")

    @extend_schema(
        request=InputSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                IDEMPOTENCY_KEY_SCHEMA,
                OpenApiParameter.HEADER,
                description=(
                    "1 to 255 printable ASCII characters (400 otherwise). A final answer of the attempt (SUCCESS, "
                    "ALREADY_PURCHASED, SOLD_OUT, ENDED from the sale's script) is kept for the same key from the "
                    "same user until shortly after the sale's end and given again; a temporary refusal "
                    "(RATE_LIMITED, NOT_STARTED, POW_INVALID, UNAVAILABLE) is never kept, so a retry is judged "
                    "afresh; the key with another body answers 422 IDEMPOTENCY_KEY_REUSED (IETF httpapi "
                    "idempotency-key draft semantics)."
                ),
            )
        ],
        responses={
            201: OutputSerializer,
            400: OpenApiResponse(ErrorSerializer, description="INVALID_REQUEST"),
            401: OpenApiResponse(ErrorSerializer, description="UNAUTHENTICATED"),
            403: OpenApiResponse(
                ErrorSerializer, description="POW_INVALID; FORBIDDEN: a session without its CSRF token"
            ),
            404: OpenApiResponse(ErrorSerializer, description="NOT_FOUND"),
            409: OpenApiResponse(RejectedSerializer, description="SOLD_OUT, ALREADY_PURCHASED, NOT_STARTED, ENDED"),
            422: OpenApiResponse(ErrorSerializer, description="IDEMPOTENCY_KEY_REUSED"),
            429: OpenApiResponse(
                RateLimitedSerializer,
                description="RATE_LIMITED (Retry-After set); reason: bucket, crowd, user, ip or slow",
            ),
            503: OpenApiResponse(ErrorSerializer, description="UNAVAILABLE (Retry-After set)"),
        },
        summary="Try to buy one unit",
        auth=SHOPPER_AUTH,
    )
    def post(self, request: HttpRequest, sale_id: int) -> HttpResponse:  # type: ignore[override]
        started = time.perf_counter()
        try:
            user_id = request_user_id(request)
            try:
                raw = request.body
            except RequestDataTooBig:
                raise body_too_large() from None
            body = purchase_body_parse(raw)
            # META, not request.headers: that builds a mapping of every header per request.
            key = request.META.get("HTTP_IDEMPOTENCY_KEY")
            answer = purchase_attempt(
                sale_id=sale_id,
                user_id=user_id,
                client_ip=client_ip(request),
                challenge=body.get("challenge"),
                solution=body.get("solution"),
                queue_pass=body.get("pass"),
                idempotency=(
                    IdempotentRequest.from_header(key, method="POST", path=request.path, body=raw)
                    if key is not None
                    else None
                ),
            )
        except Exception as raised:
            error = as_application_error(raised)
            if error is None:
                raise
            response: HttpResponse = error_json_response(error)
            code = error.code
        else:
            response, code = purchase_answer_response(answer, sale_id=sale_id), answer.status.value
        known_sale = sale_id if code != SaleNotFound.code else None
        seconds = time.perf_counter() - started
        purchase_observed(sale_id=known_sale, status=code, seconds=seconds, transport="http")
        if known_sale is not None:
            tally.answered(known_sale, seconds)
        return response


class ChallengeApi(HotPathApi):
    """``POST /api/sales/<id>/challenge/``: a proof-of-work challenge for the caller."""

    @extend_schema_serializer(component_name="ChallengeOutput")
    class OutputSerializer(serializers.Serializer):
        challenge = serializers.CharField(help_text="Opaque, signed, bound to the caller, the sale and the expiry.")
        difficulty = serializers.IntegerField(help_text="Leading zero bits sha256(challenge + solution) needs.")
        expires_at = serializers.DateTimeField()

    @extend_schema(
        request=None,
        responses={
            200: OutputSerializer,
            401: OpenApiResponse(ErrorSerializer, description="UNAUTHENTICATED"),
            403: OpenApiResponse(ErrorSerializer, description="FORBIDDEN: a session without its CSRF token"),
            404: OpenApiResponse(ErrorSerializer, description="NOT_FOUND"),
            429: OpenApiResponse(ErrorSerializer, description="RATE_LIMITED (Retry-After set)"),
            503: OpenApiResponse(ErrorSerializer, description="UNAVAILABLE (Retry-After set)"),
        },
        summary="Get a proof-of-work challenge",
        auth=SHOPPER_AUTH,
    )
    def post(self, request: HttpRequest, sale_id: int) -> HttpResponse:
        try:
            user_id = request_user_id(request)
            issued = sale_challenge_issue(sale_id=sale_id, user_id=user_id, client_ip=client_ip(request))
        except ApplicationError as error:
            return error_json_response(error)
        body = {
            "challenge": issued.challenge,
            "difficulty": issued.difficulty,
            "expires_at": serializers.DateTimeField().to_representation(issued.expires_at),
        }
        return JsonResponse(body)


class QueueApi(HotPathApi):
    """``/api/sales/<id>/queue/``: join a queue-mode sale's line (POST) or read one's place
    (GET; with the pass in ``Queue-Pass`` or ``?pass=``, answered by this process alone)."""

    hot_methods = ("GET", "POST")

    @extend_schema_serializer(component_name="QueueJoinInput")
    class InputSerializer(serializers.Serializer):
        challenge = serializers.CharField(required=False, max_length=MAX_CHALLENGE_LENGTH)
        solution = serializers.CharField(required=False, max_length=MAX_SOLUTION_LENGTH)

    @extend_schema_serializer(component_name="QueuePlace")
    class OutputSerializer(serializers.Serializer):
        number = serializers.IntegerField(help_text="Your number: 1, 2, ... in the order joins reached the line.")
        position = serializers.IntegerField(
            help_text="Where your number stands (the shuffled pre-queue's place; else the number)."
        )
        ahead = serializers.IntegerField(help_text="Shoppers still to be let in before you.")
        served = serializers.IntegerField(help_text="The serving counter: places up to it have been let in.")
        eta_seconds = serializers.FloatField(
            allow_null=True, help_text="Seconds until your turn at the measured rate (null: not moving)."
        )
        rate_per_second = serializers.FloatField(help_text="Places let in per second, as measured.")
        status = serializers.ChoiceField(choices=[status.value for status in PlaceStatus])

    # ``pass`` is a Python keyword: the field is declared by name.
    OutputSerializer._declared_fields["pass"] = serializers.CharField(
        help_text="Your pass: send it with your purchase as pass, and with your place reads."
    )

    _ERRORS = {
        401: OpenApiResponse(ErrorSerializer, description="UNAUTHENTICATED"),
        403: OpenApiResponse(ErrorSerializer, description="POW_INVALID (join), QUEUE_PASS_INVALID (read)"),
        404: OpenApiResponse(ErrorSerializer, description="NOT_FOUND: no such sale, or no place of yours (read)"),
        409: OpenApiResponse(
            ErrorSerializer, description="SALE_NOT_QUEUED, QUEUE_NOT_OPEN (Retry-After set), SOLD_OUT, ENDED"
        ),
        429: OpenApiResponse(ErrorSerializer, description="RATE_LIMITED (Retry-After set)"),
        503: OpenApiResponse(ErrorSerializer, description="UNAVAILABLE (Retry-After set)"),
    }

    @extend_schema(
        request=InputSerializer,
        responses={201: OutputSerializer, 200: OutputSerializer, **_ERRORS},
        summary="Join the sale's line (201), or hear your place again (200)",
        auth=SHOPPER_AUTH,
    )
    def post(self, request: HttpRequest, sale_id: int) -> HttpResponse:
        try:
            user_id = request_user_id(request)
            try:
                raw = request.body
            except RequestDataTooBig:
                raise body_too_large() from None
            body = purchase_body_parse(raw, JOIN_FIELDS)
            place = queue_join(
                sale_id=sale_id,
                user_id=user_id,
                client_ip=client_ip(request),
                challenge=body.get("challenge"),
                solution=body.get("solution"),
            )
        except ApplicationError as error:
            return error_json_response(error)
        return JsonResponse(place_body(place), status=201 if place.created else 200)

    @extend_schema(
        parameters=[
            OpenApiParameter("Queue-Pass", str, OpenApiParameter.HEADER, required=False),
            OpenApiParameter("pass", str, OpenApiParameter.QUERY, required=False),
        ],
        responses={200: OutputSerializer, **_ERRORS},
        summary="Your place in the sale's line",
        auth=SHOPPER_AUTH,
    )
    def get(self, request: HttpRequest, sale_id: int) -> HttpResponse:
        try:
            user_id = request_user_id(request)
            queue_pass = request.META.get("HTTP_QUEUE_PASS")
            if queue_pass == "":
                # granian hands over a header value that is not ASCII as empty; no pass is
                # empty, so this one is not a pass this server issued.
                raise QueuePassInvalid("forged: the Queue-Pass header holds no pass this server issued.")
            place = queue_place(sale_id=sale_id, user_id=user_id, queue_pass=queue_pass or request.GET.get("pass"))
        except ApplicationError as error:
            return error_json_response(error)
        # JsonResponse's bytes (a place holds no value DjangoJSONEncoder would change), without
        # its encoder class built per answer.
        return HttpResponse(json.dumps(place_body(place)).encode(), content_type="application/json")
