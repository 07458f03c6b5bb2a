"""One error type for the domain and one place that turns errors into the contract's body.

Every error answer of the API is ``{"status": "<CODE>", "detail": "<human sentence>"}``, with
extra fields only where the contract names them (``order_id``, field ``errors``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions as drf_exceptions
from rest_framework import serializers
from rest_framework.response import Response


class ApplicationError(Exception):
    """A failure the caller can act on. Subclasses fix ``http_status`` and ``code``."""

    http_status: ClassVar[int] = 400
    code: ClassVar[str] = "INVALID_REQUEST"
    default_detail: ClassVar[str] = "The request is not valid."

    def __init__(
        self,
        detail: str | None = None,
        *,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.detail = detail or self.default_detail
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})
        super().__init__(self.detail)

    def body(self) -> dict[str, Any]:
        return {"status": self.code, "detail": self.detail, **self.extra}


class InvalidRequest(ApplicationError):
    http_status = 400
    code = "INVALID_REQUEST"


class Unauthenticated(ApplicationError):
    http_status = 401
    code = "UNAUTHENTICATED"
    default_detail = "Authentication credentials were not provided or are not valid."


class Forbidden(ApplicationError):
    http_status = 403
    code = "FORBIDDEN"
    default_detail = "You do not have permission to do this."


class NotFound(ApplicationError):
    http_status = 404
    code = "NOT_FOUND"
    default_detail = "Not found."


class MethodNotAllowed(ApplicationError):
    http_status = 405
    code = "METHOD_NOT_ALLOWED"
    default_detail = "This method is not allowed here."


class Unavailable(ApplicationError):
    http_status = 503
    code = "UNAVAILABLE"
    default_detail = "The sale is briefly unavailable; nothing was bought. Try again shortly."

    def __init__(self, detail: str | None = None, *, retry_after: int = 1) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


def error_json_response(error: ApplicationError) -> JsonResponse:
    """The contract's error answer, for plain Django views (the purchase hot path)."""
    response = JsonResponse(error.body(), status=error.http_status)
    for name, value in error.headers.items():
        response[name] = value
    return response


class ErrorSerializer(serializers.Serializer):
    """The contract's error body (for the OpenAPI schema)."""

    status = serializers.CharField(help_text="A code such as SOLD_OUT or INVALID_REQUEST.")
    detail = serializers.CharField(help_text="A sentence for people.")


_DRF_CODES: dict[type[drf_exceptions.APIException], tuple[str, int]] = {
    drf_exceptions.NotAuthenticated: ("UNAUTHENTICATED", 401),
    drf_exceptions.AuthenticationFailed: ("UNAUTHENTICATED", 401),
    drf_exceptions.PermissionDenied: ("FORBIDDEN", 403),
    drf_exceptions.NotFound: ("NOT_FOUND", 404),
    drf_exceptions.MethodNotAllowed: ("METHOD_NOT_ALLOWED", 405),
    drf_exceptions.NotAcceptable: ("NOT_ACCEPTABLE", 406),
    drf_exceptions.UnsupportedMediaType: ("UNSUPPORTED_MEDIA_TYPE", 415),
    drf_exceptions.Throttled: ("RATE_LIMITED", 429),
    drf_exceptions.ParseError: ("INVALID_REQUEST", 400),
    drf_exceptions.ValidationError: ("INVALID_REQUEST", 400),
}


def exception_handler(exc: Exception, context: Mapping[str, Any]) -> Response | None:
    """DRF's ``EXCEPTION_HANDLER``: application errors and DRF's own, in the contract's body."""
    if isinstance(exc, ApplicationError):
        return Response(exc.body(), status=exc.http_status, headers=exc.headers)
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    if not isinstance(exc, drf_exceptions.APIException):
        return None  # A bug: let Django log it and answer 500.

    code, http_status = next(
        (pair for kind, pair in _DRF_CODES.items() if isinstance(exc, kind)),
        ("ERROR", exc.status_code),
    )
    body: dict[str, Any] = {"status": code}
    if isinstance(exc, drf_exceptions.ValidationError):
        body["detail"] = _validation_sentence(exc.detail)
        body["errors"] = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
    else:
        body["detail"] = str(exc.detail)
    headers: dict[str, str] = {}
    wait = getattr(exc, "wait", None)
    if isinstance(exc, drf_exceptions.Throttled) and wait is not None:
        headers["Retry-After"] = str(max(1, math.ceil(wait)))
    if http_status == 401:
        headers["WWW-Authenticate"] = "Token"
    return Response(body, status=http_status, headers=headers)


def _validation_sentence(detail: Any) -> str:
    if isinstance(detail, dict):
        for field, messages in detail.items():
            first = messages[0] if isinstance(messages, list) and messages else messages
            if field == "non_field_errors":
                return str(first)
            return f"{field}: {first}"
    if isinstance(detail, list) and detail:
        return str(detail[0])
    return "The request is not valid."


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler404``: the contract's body under ``/api/``, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return error_json_response(NotFound(f"Nothing at {request.path}."))
    return defaults.page_not_found(request, exception or Http404())


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: the contract's body under ``/api/``, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        body = {"status": "SERVER_ERROR", "detail": "The server failed to answer; the error was logged."}
        return JsonResponse(body, status=500)
    return defaults.server_error(request)
