"""One error type for the domain, one table of what each transport answers for it, and the
one place per transport that turns an error into that answer.

Every error answer is ``{"status": "<CODE>", "detail": "<human sentence>"}``, with extra fields
only where the contract names them (``order_id``, ``reason``, field ``errors``).
``TRANSPORT_ANSWERS`` gives each code its HTTP status (the REST API and the pages) and its
WebSocket close code; the TCP door's frame carries the body, with ``retry_after_ms`` where
HTTP sends ``Retry-After`` (``error_frame_body``). ``as_application_error`` turns what is not
an ``ApplicationError`` yet (a dependency away, Django's refusals) into one, for every
transport alike.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
from kombu.exceptions import OperationalError as BrokerOperationalError
from rest_framework import exceptions as drf_exceptions
from rest_framework import serializers
from rest_framework.response import Response

from .redis_store import RedisUnavailable

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"


@dataclass(frozen=True, slots=True)
class TransportAnswer:
    """What each transport answers for one error code."""

    http_status: int
    close_code: int
    """The WebSocket close code: 4000 + the HTTP status for a refusal the page should show
    (RFC 6455's private range), 1013 (try again later) for one that passes, 1011 for a bug."""


TRANSPORT_ANSWERS: dict[str, TransportAnswer] = {
    "INVALID_REQUEST": TransportAnswer(400, 4400),
    "UNAUTHENTICATED": TransportAnswer(401, 4401),
    "FORBIDDEN": TransportAnswer(403, 4403),
    "NOT_FOUND": TransportAnswer(404, 4404),
    "METHOD_NOT_ALLOWED": TransportAnswer(405, 4405),
    "NOT_ACCEPTABLE": TransportAnswer(406, 4406),
    "REQUEST_TIMEOUT": TransportAnswer(408, 4408),
    "SALE_LOCKED": TransportAnswer(409, 4409),
    "SALE_LIVE": TransportAnswer(409, 4409),
    "SALE_NOT_QUEUED": TransportAnswer(409, 4409),
    "QUEUE_NOT_OPEN": TransportAnswer(409, 4409),
    "ORDER_NOT_PENDING": TransportAnswer(409, 4409),
    "REHEARSAL_REFUSED": TransportAnswer(409, 4409),
    "REHEARSAL_RUNNING": TransportAnswer(409, 4409),
    "ORDER_EXPIRED": TransportAnswer(409, 4409),
    "SIGNATURE_INVALID": TransportAnswer(401, 4401),
    "SIGNATURE_EXPIRED": TransportAnswer(401, 4401),
    "PAYMENT_REFERENCE_INVALID": TransportAnswer(403, 4403),
    "UNSUPPORTED_MEDIA_TYPE": TransportAnswer(415, 4415),
    "IDEMPOTENCY_KEY_REUSED": TransportAnswer(422, 4422),
    "POW_INVALID": TransportAnswer(403, 4403),
    "SOLD_OUT": TransportAnswer(409, 4409),
    "ALREADY_PURCHASED": TransportAnswer(409, 4409),
    "ENDED": TransportAnswer(409, 4409),
    "NOT_STARTED": TransportAnswer(409, 4409),
    "NOT_YOUR_TURN": TransportAnswer(409, 4409),
    "QUEUE_PASS_INVALID": TransportAnswer(403, 4403),
    "RATE_LIMITED": TransportAnswer(429, 1013),
    "SERVER_ERROR": TransportAnswer(500, 1011),
    "UNAVAILABLE": TransportAnswer(503, 1013),
}
"""Every ``ApplicationError`` code and every refusal of a purchase (``sales.outcomes``) and
what it is on each transport (a test checks that each subclass's code is here)."""


class ApplicationError(Exception):
    """A failure the caller can act on. Subclasses fix ``code`` (a key of
    ``TRANSPORT_ANSWERS``) and ``default_detail``."""

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

    @property
    def http_status(self) -> int:
        return TRANSPORT_ANSWERS[self.code].http_status

    @property
    def close_code(self) -> int:
        return TRANSPORT_ANSWERS[self.code].close_code

    def body(self) -> dict[str, Any]:
        return {"status": self.code, "detail": self.detail, **self.extra}


class InvalidRequest(ApplicationError):
    code = "INVALID_REQUEST"


class Unauthenticated(ApplicationError):
    code = "UNAUTHENTICATED"
    default_detail = "Authentication credentials were not provided or are not valid."


class Forbidden(ApplicationError):
    code = "FORBIDDEN"
    default_detail = "You do not have permission to do this."


class NotFound(ApplicationError):
    code = "NOT_FOUND"
    default_detail = "Not found."


class MethodNotAllowed(ApplicationError):
    code = "METHOD_NOT_ALLOWED"
    default_detail = "This method is not allowed here."


class RequestTimeout(ApplicationError):
    """A request that did not arrive whole in time: its body, on the web server
    (``core.request_bodies``), or its headers and body, at the balancer (its ``errorfile``)."""

    code = "REQUEST_TIMEOUT"
    default_detail = "The request did not arrive whole in time; nothing was changed. Send it again."


class ServerError(ApplicationError):
    """A bug: logged where it happened, answered in the contract's body."""

    code = "SERVER_ERROR"
    default_detail = "The server failed to answer; the error was logged."


class Unavailable(ApplicationError):
    """The one exception for "a dependency is away": Redis, PostgreSQL or the broker cannot
    answer now. Nothing was changed; the client may retry after ``Retry-After``."""

    code = "UNAVAILABLE"
    default_detail = "The service is briefly unavailable; nothing was changed. Try again shortly."

    def __init__(self, detail: str | None = None, *, retry_after: int = 1) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


DEPENDENCY_ERRORS: tuple[type[BaseException], ...] = (
    *RedisUnavailable,  # includes BusyLoadingError: Redis replaying its append-only file
    ConnectionInterrupted,  # django-redis (cache, sessions) wrapping the same
    DatabaseOperationalError,  # PostgreSQL refused or dropped the connection
    DatabaseInterfaceError,  # a connection that was already closed
    BrokerOperationalError,  # kombu: the Celery broker cannot be reached
)
"""Failures that mean "Redis, PostgreSQL or the broker cannot answer now": ``Unavailable``
(503 with Retry-After), never a 500. A bug (a DataError, a TypeError) is not one of them."""


def is_dependency_down(error: BaseException) -> bool:
    return isinstance(error, DEPENDENCY_ERRORS)


def body_too_large() -> InvalidRequest:
    return InvalidRequest(f"The body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.")


def as_application_error(error: BaseException) -> ApplicationError | None:
    """The contract's error for what any transport may meet: itself for an
    ``ApplicationError``, ``Unavailable`` for a dependency away, Django's refusals as theirs;
    None for a bug (each transport logs it and answers ``ServerError``)."""
    if isinstance(error, ApplicationError):
        return error
    if is_dependency_down(error):
        return Unavailable()
    if isinstance(error, RequestDataTooBig):
        return body_too_large()
    if isinstance(error, SuspiciousOperation):
        return InvalidRequest()
    if isinstance(error, Http404):
        return NotFound()
    if isinstance(error, DjangoPermissionDenied):
        return Forbidden()
    return None


# --- HTTP: the REST API and the pages --------------------------------------------------------


def error_json_response(error: ApplicationError) -> JsonResponse:
    """The contract's error answer over HTTP, for plain Django views (the purchase hot path)."""
    response = JsonResponse(error.body(), status=error.http_status)
    for name, value in error.headers.items():
        response[name] = value
    return response


# --- The TCP door --------------------------------------------------------------------------


def error_frame_body(error: ApplicationError) -> dict[str, Any]:
    """The contract's error body for the TCP door's frame: the wait travels in the body as
    ``retry_after_ms``, where HTTP sends ``Retry-After``."""
    body = error.body()
    retry_after = error.headers.get("Retry-After")
    if retry_after is not None:
        body["retry_after_ms"] = int(retry_after) * 1000
    return body


class ErrorSerializer(serializers.Serializer):
    """The contract's error body (for the OpenAPI schema)."""

    status = serializers.CharField(help_text="A code such as SOLD_OUT or INVALID_REQUEST.")
    detail = serializers.CharField(help_text="A sentence for people.")


_DRF_CODES: dict[type[drf_exceptions.APIException], str] = {
    drf_exceptions.NotAuthenticated: "UNAUTHENTICATED",
    drf_exceptions.AuthenticationFailed: "UNAUTHENTICATED",
    drf_exceptions.PermissionDenied: "FORBIDDEN",
    drf_exceptions.NotFound: "NOT_FOUND",
    drf_exceptions.MethodNotAllowed: "METHOD_NOT_ALLOWED",
    drf_exceptions.NotAcceptable: "NOT_ACCEPTABLE",
    drf_exceptions.UnsupportedMediaType: "UNSUPPORTED_MEDIA_TYPE",
    drf_exceptions.Throttled: "RATE_LIMITED",
    drf_exceptions.ParseError: "INVALID_REQUEST",
    drf_exceptions.ValidationError: "INVALID_REQUEST",
}


def exception_handler(exc: Exception, context: Mapping[str, Any]) -> Response | None:
    """DRF's ``EXCEPTION_HANDLER``: application errors and DRF's own, in the contract's body."""
    if not isinstance(exc, drf_exceptions.APIException):
        error = as_application_error(exc)
        if error is None:
            return None  # A bug: let Django log it and answer 500.
        return Response(error.body(), status=error.http_status, headers=error.headers)
    code = next((code for kind, code in _DRF_CODES.items() if isinstance(exc, kind)), "ERROR")
    answer = TRANSPORT_ANSWERS.get(code)
    http_status = answer.http_status if answer is not None else exc.status_code
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
    return InvalidRequest.default_detail


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


def page_error_response(error: ApplicationError) -> HttpResponse:
    """The contract's error on a page (not ``/api/``): its sentence as text, its status and
    headers."""
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
    """``handler500``: the answer to the exception Django is handling (it calls this while it
    does), from ``exception_response``; Django's page for a bug outside ``/api/``."""
    current = sys.exc_info()[1]
    if isinstance(current, Exception):
        response = exception_response(request, current, log=False)
        if response is not None:
            return response
    if _is_api(request):
        return error_json_response(ServerError())
    return defaults.server_error(request)


class ContractErrorsMiddleware:
    """A view's uncaught exception, answered before Django's handlers (which show HTML debug
    pages when ``DEBUG`` is on): a dependency away is 503 with Retry-After on every page;
    under ``/api/`` a refused request is the contract's 4xx and a bug its 500 body (logged
    here, as Django would have)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        return exception_response(request, exception)


def exception_response(request: HttpRequest, exception: Exception, *, log: bool = True) -> HttpResponse | None:
    """HTTP's one translation of an uncaught exception (None: Django's own handling of a page's
    error). Also used by the hot-path router, which runs no middleware."""
    error = as_application_error(exception)
    if isinstance(error, Unavailable):
        if log:
            logger.warning("%s %s: a dependency is away: %r", request.method, request.path, exception)
        return error_json_response(error) if _is_api(request) else page_error_response(error)
    if not _is_api(request):
        return None
    if isinstance(exception, Http404):
        return api_not_found(request)
    if error is None:
        if log:
            logger.error("%s %s failed", request.method, request.path, exc_info=exception)
        error = ServerError()
    return error_json_response(error)
