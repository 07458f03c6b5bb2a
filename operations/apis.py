"""The admin API of rehearsals: what ``manage.py flashsale rehearse --against URL`` asks a
stack to do, as a staff member (``IsAdminUser``: a staff user's access token, or the admin's
session). Thin views around ``operations.rehearsal``."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import ErrorSerializer, InvalidRequest, NotFound
from sales.models import FlashSale, SaleRehearsal

from .rehearsal import (
    MAX_ATTEMPTS,
    MAX_SHOPPERS,
    TRANSPORTS,
    rehearsal_abort,
    rehearsal_begin,
    rehearsal_finish,
    rehearsal_open,
    rehearsal_running,
)
from .verdicts import Targets

_REFUSED = {
    400: OpenApiResponse(ErrorSerializer, description="INVALID_REQUEST"),
    401: OpenApiResponse(ErrorSerializer, description="UNAUTHENTICATED"),
    403: OpenApiResponse(ErrorSerializer, description="FORBIDDEN: not staff"),
    404: OpenApiResponse(ErrorSerializer, description="NOT_FOUND"),
}


class TargetsSerializer(serializers.Serializer):
    p99_ms = serializers.FloatField(required=False, allow_null=True, min_value=0)
    sell_out_seconds = serializers.FloatField(required=False, allow_null=True, min_value=0)
    zero_errors = serializers.BooleanField(required=False, default=True)


def _valid(serializer: serializers.Serializer) -> dict[str, Any]:
    if not serializer.is_valid():
        raise InvalidRequest("The body is not valid.", extra={"errors": serializer.errors})
    return dict(serializer.validated_data)


class RehearsalStartApi(APIView):
    """``POST /api/admin/sales/<id>/rehearsals/``: a shadow sale and its shoppers."""

    permission_classes = [IsAdminUser]

    class InputSerializer(serializers.Serializer):
        shoppers = serializers.IntegerField(min_value=1, max_value=MAX_SHOPPERS)
        attempts = serializers.IntegerField(min_value=1, max_value=MAX_ATTEMPTS)
        stock = serializers.IntegerField(required=False, min_value=1)
        targets = TargetsSerializer(required=False)
        transport = serializers.ChoiceField(choices=list(TRANSPORTS), required=False, default="http")

    @extend_schema(
        request=InputSerializer,
        responses={
            201: OpenApiResponse(description="The stage: the shadow sale, the shoppers and their tokens"),
            409: OpenApiResponse(ErrorSerializer, description="REHEARSAL_REFUSED, REHEARSAL_RUNNING"),
            **_REFUSED,
        },
        summary="Set a rehearsal of the sale up (staff)",
    )
    def post(self, request: Request, sale_id: int) -> Response:
        body = _valid(self.InputSerializer(data=request.data))
        sale = FlashSale.objects.select_related("product").filter(pk=sale_id).first()
        if sale is None:
            raise NotFound("There is no such sale.")
        stage = rehearsal_begin(
            sale=sale,
            shoppers=body["shoppers"],
            attempts=body["attempts"],
            stock=body.get("stock"),
            targets=Targets.from_json(body.get("targets") or {}),
            transport=body["transport"],
            requested_by_id=request.user.pk,
        )
        return Response(stage.as_json(), status=201)


class RehearsalOpenApi(APIView):
    """``POST /api/admin/rehearsals/<id>/open/``: the shadow sale starts in a few seconds."""

    permission_classes = [IsAdminUser]

    @extend_schema(
        request=None,
        responses={200: OpenApiResponse(description="starts_at_ms, ends_at_ms, server_now_ms"), **_REFUSED},
        summary="Open a rehearsal's shadow sale (staff)",
    )
    def post(self, request: Request, rehearsal_id: int) -> Response:
        return Response(rehearsal_open(rehearsal=rehearsal_running(rehearsal_id)).as_json())


class RehearsalFinishApi(APIView):
    """``POST /api/admin/rehearsals/<id>/finish/``: judge, keep the report, clean up."""

    permission_classes = [IsAdminUser]

    class InputSerializer(serializers.Serializer):
        crowd = serializers.DictField(help_text="What the crowd heard (operations.crowd.CrowdFigures.as_json).")

    @extend_schema(
        request=InputSerializer,
        responses={200: OpenApiResponse(description="The report"), **_REFUSED},
        summary="Finish a rehearsal (staff)",
    )
    def post(self, request: Request, rehearsal_id: int) -> Response:
        body = _valid(self.InputSerializer(data=request.data))
        rehearsal = rehearsal_finish(rehearsal=rehearsal_running(rehearsal_id), crowd=body["crowd"])
        return Response({"id": rehearsal.pk, "status": rehearsal.status, **rehearsal.report})


class RehearsalAbortApi(APIView):
    """``POST /api/admin/rehearsals/<id>/abort/``: stop without a verdict, clean up."""

    permission_classes = [IsAdminUser]

    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(required=False, max_length=500, default="stopped by the operator")

    @extend_schema(request=InputSerializer, responses={200: None, **_REFUSED}, summary="Abort a rehearsal (staff)")
    def post(self, request: Request, rehearsal_id: int) -> Response:
        body = _valid(self.InputSerializer(data=request.data))
        rehearsal = rehearsal_abort(rehearsal=rehearsal_running(rehearsal_id), reason=body["reason"])
        return Response({"id": rehearsal.pk, "status": rehearsal.status})


class RehearsalDetailApi(APIView):
    """``GET /api/admin/rehearsals/<id>/``: a rehearsal's status and report, as JSON."""

    permission_classes = [IsAdminUser]

    @extend_schema(
        responses={200: OpenApiResponse(description="The rehearsal and its report"), **_REFUSED},
        summary="A rehearsal's report (staff)",
    )
    def get(self, request: Request, rehearsal_id: int) -> Response:
        rehearsal = SaleRehearsal.objects.filter(pk=rehearsal_id).first()
        if rehearsal is None:
            raise NotFound("There is no such rehearsal.")
        return Response(rehearsal_body(rehearsal))


def rehearsal_body(rehearsal: SaleRehearsal) -> dict[str, Any]:
    return {
        "id": rehearsal.pk,
        "sale_id": rehearsal.sale_id,
        "status": rehearsal.status,
        "shoppers": rehearsal.shoppers,
        "attempts": rehearsal.attempts,
        "stock": rehearsal.stock,
        "transport": rehearsal.transport,
        "targets": rehearsal.targets,
        "started_at": rehearsal.started_at.isoformat(),
        "finished_at": rehearsal.finished_at.isoformat() if rehearsal.finished_at else None,
        "report": rehearsal.report,
    }
