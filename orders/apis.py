from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import NotFound

from .selectors import order_of_user, orders_of_user


class OrderSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    sale_id = serializers.IntegerField()
    product = serializers.CharField(source="sale.product.name")
    unit_price = serializers.DecimalField(max_digits=10, decimal_places=2)
    status = serializers.CharField()
    created_at = serializers.DateTimeField()
    paid_at = serializers.DateTimeField(allow_null=True)


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
