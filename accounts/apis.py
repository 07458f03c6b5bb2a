from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.contrib.auth import authenticate, get_user_model, password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.client_address import client_ip
from core.errors import ErrorSerializer, InvalidRequest, Unauthenticated
from core.openapi import error_response
from core.strict_json import ClosedSerializer, StrictCharField, StrictEmailField, StrictRegexField

from .authentication import AccessTokenAuthentication
from .selectors import AUTHORIZATION_SCHEMES, user_id_for_token
from .services import IssuedToken, token_issue, user_register
from .throttles import login_attempt_begin, login_attempt_failed, registration_attempt


@extend_schema_serializer(component_name="Throttled")
class ThrottledSerializer(ErrorSerializer):
    reason = serializers.ChoiceField(
        choices=["ip", "account"], help_text="What is over its limit: your address, or this account name."
    )


THROTTLED = OpenApiResponse(ThrottledSerializer, description="RATE_LIMITED: too many attempts (Retry-After set)")


def _expiry(issued: IssuedToken) -> str:
    return serializers.DateTimeField().to_representation(datetime.fromtimestamp(issued.expires_at, tz=UTC))


class RegisterApi(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema_serializer(component_name="RegisterInput")
    class InputSerializer(ClosedSerializer):
        username = StrictRegexField(
            r"^[\w.@+-]+\Z", max_length=150, error_messages={"invalid": "Use letters, digits and @/./+/-/_ only."}
        )
        password = StrictCharField(max_length=128, write_only=True, trim_whitespace=False)
        email = StrictEmailField(required=False, allow_blank=True, default="")

        def validate_username(self, value: str) -> str:
            if get_user_model().objects.filter(username__iexact=value).exists():
                raise serializers.ValidationError("That username is taken.")
            return value

        def validate(self, attrs: dict) -> dict:
            candidate = get_user_model()(username=attrs["username"], email=attrs.get("email", ""))
            try:
                password_validation.validate_password(attrs["password"], user=candidate)
            except DjangoValidationError as error:
                raise serializers.ValidationError({"password": list(error.messages)}) from None
            return attrs

    @extend_schema_serializer(component_name="RegisterOutput")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        username = serializers.CharField()
        token = serializers.CharField(help_text="Send it as Authorization: Token <token> (or Bearer).")
        expires_at = serializers.DateTimeField(help_text="Ask /api/auth/token/ for a new one before then.")

    @extend_schema(
        request=InputSerializer,
        responses={
            201: OutputSerializer,
            400: error_response("INVALID_REQUEST: field errors in errors (unknown fields are refused)"),
            429: THROTTLED,
        },
        summary="Register a shopper",
        description="Throttled per address and per username (REGISTER_THROTTLE_IP, REGISTER_THROTTLE_ACCOUNT).",
    )
    def post(self, request: Request) -> Response:
        named = request.data.get("username") if isinstance(request.data, dict) else None
        registration_attempt(client_ip=client_ip(request), username=named if isinstance(named, str) else None)
        given = self.InputSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        try:
            issued = user_register(**given.validated_data)
        except IntegrityError:  # Lost a race with another sign-up for the same name.
            raise serializers.ValidationError({"username": ["That username is taken."]}) from None
        body = {"id": issued.user_id, "username": issued.username, "token": issued.token, "expires_at": _expiry(issued)}
        return Response(self.OutputSerializer(body).data, status=status.HTTP_201_CREATED)


class TokenApi(APIView):
    authentication_classes: list = []
    permission_classes: list = []
    request_body_optional = True  # renewal sends no body (core.openapi)

    @extend_schema_serializer(component_name="TokenInput")
    class InputSerializer(ClosedSerializer):
        username = StrictCharField(max_length=150)
        password = StrictCharField(max_length=128, trim_whitespace=False)

    @extend_schema_serializer(component_name="TokenOutput")
    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField(help_text="Send it as Authorization: Token <token> (or Bearer).")
        expires_at = serializers.DateTimeField()

    @extend_schema(
        request=InputSerializer,
        responses={
            200: OutputSerializer,
            400: error_response("INVALID_REQUEST: bad credentials or a malformed body"),
            401: error_response("UNAUTHENTICATED: renewing with a token that is not valid"),
            429: THROTTLED,
        },
        summary="Get an access token",
        description=(
            "With a username and password; or, to renew a token before it expires, with no body and "
            "Authorization: Token <token>. Password checks are refused past LOGIN_THROTTLE_IP per address; "
            "an address that failed for an account (LOGIN_THROTTLE_ACCOUNT), or an account guessed from many "
            "addresses (LOGIN_THROTTLE_ACCOUNT_ANY), is answered LOGIN_SLOW_SECONDS later, never refused."
        ),
    )
    def post(self, request: Request) -> Response:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, token = header.partition(" ")
        if scheme in AUTHORIZATION_SCHEMES and not request.body:  # renewal: no body at all
            user = get_user_model().objects.filter(pk=user_id_for_token(token.strip()), is_active=True).first()
            if user is None:
                raise Unauthenticated("The token's user is no longer active.")
        else:
            given = self.InputSerializer(data=request.data)
            given.is_valid(raise_exception=True)
            username = given.validated_data["username"]
            address = client_ip(request)
            login_attempt_begin(client_ip=address, username=username)
            user = authenticate(request, **given.validated_data)
            if user is None:
                login_attempt_failed(client_ip=address, username=username)
                raise InvalidRequest("Unknown username or wrong password.")
        issued = token_issue(user=user)
        return Response(self.OutputSerializer({"token": issued.token, "expires_at": _expiry(issued)}).data)


class AccessTokenScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema names the access token: drf-spectacular finds it by class once
    this module is imported, as the URLs do."""

    target_class = AccessTokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "Token <token> (or Bearer <token>), from /api/auth/register/ or /api/auth/token/.",
        }
