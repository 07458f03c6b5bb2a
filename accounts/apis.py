from __future__ import annotations

from django.contrib.auth import authenticate, get_user_model, password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import InvalidRequest

from .services import token_issue, user_register


class RegisterApi(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema_serializer(component_name="RegisterInput")
    class InputSerializer(serializers.Serializer):
        username = serializers.RegexField(
            r"^[\w.@+-]+\Z", max_length=150, error_messages={"invalid": "Use letters, digits and @/./+/-/_ only."}
        )
        password = serializers.CharField(max_length=128, write_only=True, trim_whitespace=False)
        email = serializers.EmailField(required=False, allow_blank=True, default="")

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
        token = serializers.CharField()

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer}, summary="Register a shopper")
    def post(self, request: Request) -> Response:
        given = self.InputSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        try:
            issued = user_register(**given.validated_data)
        except IntegrityError:  # Lost a race with another sign-up for the same name.
            raise serializers.ValidationError({"username": ["That username is taken."]}) from None
        body = {"id": issued.user_id, "username": issued.username, "token": issued.token}
        return Response(self.OutputSerializer(body).data, status=status.HTTP_201_CREATED)


class TokenApi(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema_serializer(component_name="TokenInput")
    class InputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(max_length=128, trim_whitespace=False)

    @extend_schema_serializer(component_name="TokenOutput")
    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField()

    @extend_schema(request=InputSerializer, responses={200: OutputSerializer}, summary="Get an API token")
    def post(self, request: Request) -> Response:
        given = self.InputSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        user = authenticate(request, **given.validated_data)
        if user is None:
            raise InvalidRequest("Unknown username or wrong password.")
        return Response(self.OutputSerializer({"token": token_issue(user=user).token}).data)
