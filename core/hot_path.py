"""The base of the hot path's endpoints (challenge, purchase).

``dispatch`` skips DRF's per-request machinery (request wrapping, content negotiation,
authenticator and renderer instances), which the first probe measured at a large share of a
request's cost; ``post`` reads Django's request and answers JSON itself. DRF and
drf-spectacular still see an ``APIView``, so the OpenAPI schema describes these endpoints
from their serializers like any other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.conf import settings
from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest, HttpResponse
from django.urls import ResolverMatch, URLPattern
from rest_framework.views import APIView

from .errors import MethodNotAllowed, error_json_response, exception_response, server_error

StartResponse = Callable[..., Any]
WSGIApplication = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class HotPathApi(APIView):
    authentication_classes: list = []
    permission_classes: list = []
    hot_methods: tuple[str, ...] = ("POST",)
    """The methods the view answers; anything else is 405."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:  # type: ignore[override]
        self.args, self.kwargs, self.request = args, kwargs, request  # type: ignore[assignment]
        if request.method not in self.hot_methods:
            allowed = ", ".join(self.hot_methods)
            response = error_json_response(MethodNotAllowed(f"{request.method} is not allowed here; use {allowed}."))
            response["Allow"] = allowed
            return response
        return getattr(self, request.method.lower())(request, **kwargs)  # type: ignore[no-any-return, union-attr]


class HotPathRouter:
    """WSGI middleware in front of Django: a token-authenticated POST (or GET: a place read in
    a sale's line) to a hot-path endpoint goes straight to its view, skipping Django's
    middleware chain and URL resolver.

    In a stampede almost every request is such a POST, and the chain (sessions, messages,
    CSRF, host validation, the clickjacking header, the resolver's nested patterns) costs as
    much as the purchase itself; none of it concerns a JSON answer to a bearer of a token.
    Everything else, a shopper's session-cookie purchase included, goes through Django as
    usual. The views are the same either way, so the answers are identical (a test compares
    them); the response's ``close()`` still sends ``request_finished``, which recycles
    database connections as Django's handler does.

    Requests not taken: those without an Authorization header, other methods, other paths, and
    all of them when ``SECURE_SSL_REDIRECT`` is on and the request is not secure (Django's
    redirect applies).
    """

    def __init__(self, app: WSGIApplication, patterns: Sequence[URLPattern]) -> None:
        self.app = app
        self.patterns = tuple(patterns)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") in ("POST", "GET") and environ.get("HTTP_AUTHORIZATION"):
            path = environ.get("PATH_INFO", "")
            for pattern in self.patterns:
                match = pattern.resolve(path[1:])
                if (
                    match is not None
                    and environ["REQUEST_METHOD"] in getattr(match.func, "view_class", HotPathApi).hot_methods
                ):
                    if settings.SECURE_SSL_REDIRECT and environ.get("wsgi.url_scheme") != "https":
                        break
                    return self._serve(match, environ, start_response)
        return self.app(environ, start_response)

    @staticmethod
    def _serve(match: ResolverMatch, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request = WSGIRequest(environ)
        try:
            response = match.func(request, *match.args, **match.kwargs)
        except Exception as error:  # noqa: BLE001 - answered as the full stack answers it
            # As the full stack's ContractErrorsMiddleware would answer (every path here is /api/).
            response = exception_response(request, error) or server_error(request)
        # As Django's CommonMiddleware would: a length, so the server need not chunk.
        response.headers["Content-Length"] = str(len(response.content))
        start_response(f"{response.status_code} {response.reason_phrase}", [*response.items()])
        return response
