from __future__ import annotations

import uuid
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import ErrorSerializer, NotFound
from core.strict_json import ClosedSerializer, StrictCharField, json_body_load

from .models import Order
from .payments import PaymentOutcome, order_payment_report, payment_callback_verify, payment_deadline
from .selectors import order_of_user, orders_of_user


class OrderSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    sale_id = serializers.IntegerField()
    product = serializers.CharField(source="sale.product.name")
    unit_price = serializers.DecimalField(max_digits=10, decimal_places=2)
    status = serializers.CharField()
    created_at = serializers.DateTimeField()
    paid_at = serializers.DateTimeField(allow_null=True)
    pay_by = serializers.SerializerMethodField(help_text="A pending order expires then (null: no payment window).")

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_pay_by(self, order: Order) -> Any:
        deadline = payment_deadline(order) if order.status == "PENDING" else None
        return None if deadline is None else serializers.DateTimeField().to_representation(deadline)


class OrderListApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: OrderSerializer(many=True)}, summary="The caller's orders")
    def get(self, request: Request) -> Response:
        return Response(OrderSerializer(orders_of_user(user_id=request.user.pk or 0), many=True).data)


class OrderDetailApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: OrderSerializer}, summary="One of the caller's orders")
    def get(self, request: Request, order_id: str) -> Response:
        order = order_of_user(user_id=request.user.pk or 0, order_id=order_id)
        if order is None:
            raise NotFound("You have no order with this id.")
        return Response(OrderSerializer(order).data)


WEBHOOK_HEADERS = [
    OpenApiParameter(name, OpenApiTypes.STR, OpenApiParameter.HEADER, required=True, description=text)
    for name, text in (
        ("webhook-id", "The message id, without a dot."),
        ("webhook-timestamp", "Unix seconds when it was signed; refused more than five minutes away from now."),
        ("webhook-signature", 'v1,<base64 HMAC-SHA256 of "id.timestamp.body"> with a payment endpoint\'s secret.'),
    )
]


class PaymentCallbackApi(APIView):
    """The shop's report of a payment, a Standard Webhook signed with the secret of an
    endpoint registered with ``payments``. No session or token: the signature is the
    credential."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    class InputSerializer(ClosedSerializer):
        outcome = serializers.ChoiceField(choices=[outcome.value for outcome in PaymentOutcome])
        reference = StrictCharField(max_length=1000, help_text="The reference the checkout was handed for this order.")

    @extend_schema(
        request=InputSerializer,
        parameters=WEBHOOK_HEADERS,
        responses={
            200: OrderSerializer,
            401: OpenApiResponse(ErrorSerializer, description="SIGNATURE_INVALID, SIGNATURE_EXPIRED"),
            403: OpenApiResponse(ErrorSerializer, description="PAYMENT_REFERENCE_INVALID: another order's reference"),
            404: OpenApiResponse(ErrorSerializer, description="NOT_FOUND: no such order"),
            409: OpenApiResponse(ErrorSerializer, description="ORDER_EXPIRED, ORDER_NOT_PENDING"),
        },
        summary="The shop reports a payment's outcome (signed)",
    )
    def post(self, request: Request, order_id: str) -> Response:
        try:
            parsed = str(uuid.UUID(order_id))
        except ValueError:
            raise NotFound("There is no order with this id.") from None
        raw = request.body
        payment_callback_verify(body=raw, headers=request.headers)
        serializer = self.InputSerializer(data=json_body_load(raw))
        serializer.is_valid(raise_exception=True)
        order = order_payment_report(
            order_id=parsed,
            outcome=PaymentOutcome(serializer.validated_data["outcome"]),
            reference=serializer.validated_data["reference"],
        )
        order = Order.objects.select_related("sale__product").get(pk=order.pk)
        return Response(OrderSerializer(order).data)
