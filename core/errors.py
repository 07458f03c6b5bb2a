"""One error type for the domain and one place that turns errors into the contract's body.

Every error answer of the API is ``{"status": "<CODE>", "detail": "<human sentence>"}``, with
extra fields only where the contract names them (``order_id``, field ``errors``).
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import InterfaceError as DatabaseInterfaceError
from django.db import OperationalError as DatabaseOperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from django_redis.exceptions import ConnectionInterrupted
from rest_framework import exceptions as drf_exceptions
from rest_framework import serializers
from rest_framework.response import Response

from .redis_store import RedisUnavailable

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"


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


DEPENDENCY_ERRORS: tuple[type[BaseException], ...] = (
    *RedisUnavailable,  # includes BusyLoadingError: Redis replaying its append-only file
    ConnectionInterrupted,  # django-redis (cache, sessions) wrapping the same
    DatabaseOperationalError,  # PostgreSQL refused or dropped the connection
    DatabaseInterfaceError,  # a connection that was already closed
)
"""Failures that mean "Redis or PostgreSQL cannot answer now": 503 with Retry-After, never a
500. A bug (a DataError, a TypeError) is not one of them."""


class DependencyUnavailable(Unavailable):
    default_detail = "The service is briefly unavailable; nothing was changed. Try again shortly."


def is_dependency_down(error: BaseException) -> bool:
    return isinstance(error, DEPENDENCY_ERRORS)


def body_too_large() -> InvalidRequest:
    return InvalidRequest(f"The body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.")


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
    if is_dependency_down(exc):
        exc = DependencyUnavailable()
    elif isinstance(exc, RequestDataTooBig):
        exc = body_too_large()
    elif isinstance(exc, SuspiciousOperation):
        exc = InvalidRequest("The request is not valid.")
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


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


def _unavailable_response(request: HttpRequest) -> HttpResponse:
    error = DependencyUnavailable()
    if _is_api(request):
        return error_json_response(error)
    response = HttpResponse(error.detail, status=error.http_status, content_type="text/plain; charset=utf-8")
    for name, value in error.headers.items():
        response[name] = value
    return response


@csrf_exempt  # A POST here must hear 404, not the CSRF check's HTML 403: nothing is changed.
def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Every path under ``/api/`` that no route takes (a malformed id, a missing slash): the
    contract's 404 whatever ``DEBUG`` says (Django's debug 404 page is HTML)."""
    return error_json_response(NotFound(f"Nothing at {request.path}."))


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler404``: the contract's body under ``/api/``, Django's page elsewhere."""
    if _is_api(request):
        return api_not_found(request)
    return defaults.page_not_found(request, exception or Http404())


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler400``: the contract's body under ``/api/`` (a body over the size limit is
    refused before a view runs), Django's page elsewhere."""
    if _is_api(request):
        error = body_too_large() if isinstance(exception, RequestDataTooBig) else InvalidRequest()
        return error_json_response(error)
    return defaults.bad_request(request, exception or SuspiciousOperation())


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: 503 with Retry-After when Redis or PostgreSQL is away (Django calls it
    while handling the exception), else the contract's body under ``/api/`` and Django's page
    elsewhere."""
    current = sys.exc_info()[1]
    if current is not None and is_dependency_down(current):
        return _unavailable_response(request)
    if _is_api(request):
        body = {"status": "SERVER_ERROR", "detail": "The server failed to answer; the error was logged."}
        return JsonResponse(body, status=500)
    return defaults.server_error(request)


class ContractErrorsMiddleware:
    """A view's uncaught exception, answered before Django's handlers (which show HTML debug
    pages when ``DEBUG`` is on): Redis or PostgreSQL away is 503 with Retry-After on every
    page; under ``/api/`` a refused request is the contract's 400 and a bug its 500 body
    (logged here, as Django would have)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        return exception_response(request, exception)


def exception_response(request: HttpRequest, exception: Exception) -> HttpResponse | None:
    """The contract's answer to a view's uncaught exception (None: Django's own handling,
    outside ``/api/``). Also used by the hot-path router, which runs no middleware."""
    if is_dependency_down(exception):
        logger.warning("%s %s: a dependency is away: %r", request.method, request.path, exception)
        return _unavailable_response(request)
    if not _is_api(request):
        return None
    if isinstance(exception, RequestDataTooBig):
        return error_json_response(body_too_large())
    if isinstance(exception, SuspiciousOperation):
        return error_json_response(InvalidRequest())
    if isinstance(exception, Http404):
        return api_not_found(request)
    if isinstance(exception, DjangoPermissionDenied):
        return error_json_response(Forbidden())
    logger.error("%s %s failed", request.method, request.path, exc_info=exception)
    body = {"status": "SERVER_ERROR", "detail": "The server failed to answer; the error was logged."}
    return JsonResponse(body, status=500)
