from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers

from accounts.selectors import request_user_id
from flashsale_project.api_errors import ApplicationError, ErrorSerializer, Unavailable, error_json_response
from flashsale_project.hot_path import HotPathApi
from sales.inventory import RedisUnavailable
from sales.services import sale_meta_current

from .selectors import client_ip
from .services import challenge_issue


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
            404: OpenApiResponse(ErrorSerializer, description="NOT_FOUND"),
            429: OpenApiResponse(ErrorSerializer, description="RATE_LIMITED (Retry-After set)"),
            503: OpenApiResponse(ErrorSerializer, description="UNAVAILABLE (Retry-After set)"),
        },
        summary="Get a proof-of-work challenge",
    )
    def post(self, request: HttpRequest, sale_id: int) -> HttpResponse:
        try:
            user_id = request_user_id(request)
            meta = sale_meta_current(sale_id)
            issued = challenge_issue(
                sale_id=sale_id,
                user_id=user_id,
                floor_difficulty=meta.pow_difficulty,
                client_ip=client_ip(request),
            )
        except ApplicationError as error:
            return error_json_response(error)
        except RedisUnavailable:
            return error_json_response(Unavailable())
        body = {
            "challenge": issued.challenge,
            "difficulty": issued.difficulty,
            "expires_at": serializers.DateTimeField().to_representation(issued.expires_at),
        }
        return JsonResponse(body)
