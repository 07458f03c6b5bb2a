"""DRF authentication by access token, for the API's endpoints off the hot path (orders):
the same token and checks as ``accounts.selectors.request_user_id``, then the user row."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from core.errors import Unauthenticated

from .selectors import AUTHORIZATION_SCHEMES, user_id_for_token


class AccessTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[AbstractBaseUser, str] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, token = header.partition(" ")
        if scheme not in AUTHORIZATION_SCHEMES:
            return None
        token = token.strip()
        if not token or " " in token:
            raise exceptions.AuthenticationFailed("Send Authorization: Token <token>.")
        try:
            user_id = user_id_for_token(token)
        except Unauthenticated as refused:
            raise exceptions.AuthenticationFailed(refused.detail) from None
        user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
        if user is None:
            raise exceptions.AuthenticationFailed("The token's user is no longer active.")
        return user, token

    def authenticate_header(self, request: Request) -> str:
        return "Token"
