"""The base of the hot path's endpoints (challenge, purchase).

``dispatch`` skips DRF's per-request machinery (request wrapping, content negotiation,
authenticator and renderer instances), which the first probe measured at a large share of a
request's cost; ``post`` reads Django's request and answers JSON itself. DRF and
drf-spectacular still see an ``APIView``, so the OpenAPI schema describes these endpoints
from their serializers like any other.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.conf import settings
from django.core.cache import caches, close_caches
from django.core.cache.backends.base import BaseCache
from django.core.handlers.base import reset_urlconf
from django.core.handlers.wsgi import WSGIHandler, WSGIRequest
from django.core.signals import request_finished
from django.db import close_old_connections
from django.dispatch.dispatcher import _make_id  # type: ignore[attr-defined] # how Signal keys its receivers
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.urls import ResolverMatch, URLPattern
from django.utils.module_loading import import_string
from django_redis.cache import RedisCache as DjangoRedisCache
from django_redis.client import DefaultClient
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


class AfterSendResponse(HttpResponse):
    """An answer that can run a callback once the server has sent it (PEP 3333 servers call
    ``close()`` after the last byte), so the client never waits for it."""

    after_send: Callable[[], None] | None = None

    def close(self) -> None:
        super().close()
        if self.after_send is not None:
            self.after_send()


def _cache_close_is_noop(config: dict[str, Any]) -> bool:
    """Closing a cache configured so at a request's end does nothing: its backend keeps
    ``BaseCache.close``, or it is django-redis's with ``CLOSE_CONNECTION`` off (what that
    client's ``close()`` reads)."""
    backend = import_string(config["BACKEND"])
    if backend.close is BaseCache.close:
        return True
    options = config.get("OPTIONS", {})
    client = options.get("CLIENT_CLASS", "django_redis.client.DefaultClient")
    if backend.close is not DjangoRedisCache.close or import_string(client).close is not DefaultClient.close:
        return False
    return not options.get("CLOSE_CONNECTION", getattr(settings, "DJANGO_REDIS_CLOSE_CONNECTION", False))


_caches_judged: list[Any] = [None, False]
"""The cache settings last judged (the object itself: a test's override makes a new one),
and whether closing every cache they configure does nothing."""


def _finished_db() -> None:
    close_old_connections()


def _finished_caches() -> None:
    configured = caches.settings
    if _caches_judged[0] is not configured:
        _caches_judged[:] = [configured, all(_cache_close_is_noop(config) for config in configured.values())]
    if not _caches_judged[1]:
        close_caches()


def _finished_urlconf() -> None:
    """Nothing: only Django's handler sets a thread's URLconf, and it sets it afresh at the
    start of each of its requests; the hot path resolves its own patterns and reads none."""


_NONE_ID = _make_id(None)
_FINISHERS: dict[tuple[Any, Any], Callable[[], None]] = {
    (_make_id(close_old_connections), _NONE_ID): _finished_db,
    (_make_id(close_caches), _NONE_ID): _finished_caches,
    (_make_id(reset_urlconf), _NONE_ID): _finished_urlconf,
}


def hot_request_finished() -> None:
    """``request_finished`` for an answer of the hot path, without the signal's dispatch.

    Each receiver Django connects is run as what it does for such a request: the thread's
    database connections past their age or broken are closed (``close_old_connections``,
    itself), the caches closed only when closing one does something, and the URLconf left
    alone (``_finished_urlconf``). When any other receiver is connected, the signal is sent as Django
    sends it, so nothing connected is ever skipped."""
    finishers = []
    for lookup_key, _, _ in request_finished.receivers:
        finisher = _FINISHERS.get(lookup_key)
        if finisher is None:
            request_finished.send(sender=WSGIHandler)
            return
        finishers.append(finisher)
    for finisher in finishers:
        finisher()


class _Served:
    """What the hot path hands the server: the answer's bytes, and a ``close()`` that
    finishes the request as ``HttpResponse.close`` does, through ``hot_request_finished``."""

    __slots__ = ("response",)

    def __init__(self, response: HttpResponseBase) -> None:
        self.response = response

    def __iter__(self) -> Any:
        return iter(self.response)

    def close(self) -> None:
        response = self.response
        for closer in response._resource_closers:  # type: ignore[attr-defined]
            with contextlib.suppress(Exception):  # as HttpResponseBase.close
                closer()
        response._resource_closers.clear()  # type: ignore[attr-defined]
        response.closed = True
        hot_request_finished()
        after_send = getattr(response, "after_send", None)
        if after_send is not None:
            after_send()


class HotPathRouter:
    """WSGI middleware in front of Django: a token-authenticated POST (or GET: a place read in
    a sale's line) to a hot-path endpoint goes straight to its view, skipping Django's
    middleware chain and URL resolver.

    In a stampede almost every request is such a POST, and the chain (sessions, messages,
    CSRF, host validation, the clickjacking header, the resolver's nested patterns) costs as
    much as the purchase itself; none of it concerns a JSON answer to a bearer of a token.
    Everything else, a shopper's session-cookie purchase included, goes through Django as
    usual. The views are the same either way, so the answers are identical (a test compares
    them); closing the answer finishes the request as ``request_finished`` would
    (``hot_request_finished``): database connections are recycled as Django's handler does.

    Requests not taken: those without an Authorization header, other methods, other paths, and
    all of them when ``SECURE_SSL_REDIRECT`` is on and the request is not secure (Django's
    redirect applies).
    """

    RESOLVED_PATHS = 1024
    """Paths whose matches are kept (a crowd asks for a few sales' paths over and over; other
    paths are resolved again, as before)."""

    def __init__(self, app: WSGIApplication, patterns: Sequence[URLPattern]) -> None:
        self.app = app
        self.patterns = tuple(patterns)
        self._matches = functools.lru_cache(maxsize=self.RESOLVED_PATHS)(self._resolve)

    def _resolve(self, path: str) -> tuple[ResolverMatch, ...]:
        """Every pattern's match of ``path``, in order (the patterns are fixed at start-up)."""
        return tuple(match for pattern in self.patterns if (match := pattern.resolve(path[1:])) is not None)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") in ("POST", "GET") and environ.get("HTTP_AUTHORIZATION"):
            for match in self._matches(environ.get("PATH_INFO", "")):
                if environ["REQUEST_METHOD"] in getattr(match.func, "view_class", HotPathApi).hot_methods:
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
        if type(response).close is not HttpResponseBase.close and not isinstance(response, AfterSendResponse):
            return response  # a close() of its own: the server calls it, as Django's would
        return _Served(response)
