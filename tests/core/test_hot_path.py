"""The hot-path router answers a token bearer's purchase exactly as Django's full stack does,
without the middleware chain; everything else still goes through Django."""

from __future__ import annotations

import io
import json
import sys
import time
from typing import Any

import pytest
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished
from django.db import connection
from django.http import JsonResponse
from django.test import override_settings
from django.utils import timezone

from core.hot_path import _cache_close_is_noop
from flashsale_project.wsgi import application, django_application
from sales.models import Admission
from sales.waiting_room import place_body, queue_join, queue_place
from tests.factories import make_sale, make_shopper

pytestmark = pytest.mark.django_db


def _call(
    app: Any,
    path: str,
    *,
    token: str | None = None,
    method: str = "POST",
    body: bytes = b"{}",
    extra: dict[str, str] | None = None,
) -> tuple:
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "HTTP_HOST": "127.0.0.1:8000",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/json",
        "REMOTE_ADDR": "127.0.0.1",
        "SERVER_PROTOCOL": "HTTP/1.1",
    }
    if token is not None:
        environ["HTTP_AUTHORIZATION"] = f"Token {token}"
    environ.update(extra or {})
    started: list[Any] = []
    answer = application if app is None else app
    result = answer(environ, lambda status, headers: started.append((status, headers)))
    payload = b"".join(result)
    result.close()  # type: ignore[union-attr]
    status, headers = started[0]
    return status, dict(headers), payload


@pytest.mark.parametrize("stock", [3, 1])
def test_the_router_answers_as_the_full_stack_does(stock: int) -> None:
    sale = make_sale(stock=stock)
    path = f"/api/sales/{sale.pk}/purchase/"
    _, first = make_shopper()
    _, second = make_shopper()

    routed = _call(application, path, token=first)
    through_django = _call(django_application, path, token=second)
    again_routed = _call(application, path, token=first)
    again_django = _call(django_application, path, token=first)

    assert routed[0] == "201 Created"
    assert json.loads(routed[2])["status"] == "SUCCESS"
    assert through_django[0] == ("201 Created" if stock > 1 else "409 Conflict")
    assert again_routed[0] == again_django[0] == "409 Conflict"
    # The same answer, each with the receipt of its own log entry when the script gave it
    routed_body, django_body = json.loads(again_routed[2]), json.loads(again_django[2])
    assert ("receipt" in routed_body) == ("receipt" in django_body)
    routed_body.pop("receipt", None)
    django_body.pop("receipt", None)
    assert routed_body == django_body
    assert again_routed[1]["Content-Type"] == again_django[1]["Content-Type"] == "application/json"
    assert again_routed[1]["Content-Length"] == str(len(again_routed[2]))
    assert again_django[1]["Content-Length"] == str(len(again_django[2]))


def test_the_router_leaves_everything_else_to_django() -> None:
    sale = make_sale()
    _, token = make_shopper()

    no_token = _call(application, f"/api/sales/{sale.pk}/purchase/")
    a_get = _call(application, f"/api/sales/{sale.pk}/purchase/", token=token, method="GET")
    elsewhere = _call(application, f"/api/sales/{sale.pk}/", token=token, method="GET")

    # Django's stack sets the clickjacking header; the router never does.
    assert no_token[0] == "401 Unauthorized"
    assert "X-Frame-Options" in no_token[1]
    assert a_get[0] == "405 Method Not Allowed"
    assert "X-Frame-Options" in a_get[1]
    assert elsewhere[0] == "200 OK"


def test_with_an_https_redirect_a_plain_request_is_left_to_django() -> None:
    sale = make_sale()
    _, token = make_shopper()
    with override_settings(SECURE_SSL_REDIRECT=True):
        plain = _call(application, f"/api/sales/{sale.pk}/purchase/", token=token)
    # Django's stack answered (its middleware, built at start-up, decides the redirect).
    assert "X-Frame-Options" in plain[1]


# --- the end of a hot-path request (core.hot_path.hot_request_finished) -------------------


@pytest.mark.django_db(transaction=True)
def test_a_hot_path_answer_recycles_a_database_connection_past_its_age() -> None:
    sale = make_sale(starts_in=3600)  # NOT_STARTED: answered in the process, no SQL
    _, token = make_shopper()
    connection.ensure_connection()
    connection.close_at = time.monotonic() - 1  # past CONN_MAX_AGE

    status, _, _ = _call(application, f"/api/sales/{sale.pk}/purchase/", token=token)

    assert status == "409 Conflict"
    assert connection.connection is None  # closed at the answer's end, as Django's handler would


def test_a_hot_path_answer_keeps_a_database_connection_within_its_age() -> None:
    sale = make_sale(starts_in=3600)
    _, token = make_shopper()
    connection.ensure_connection()
    kept = connection.connection

    _call(application, f"/api/sales/{sale.pk}/purchase/", token=token)

    assert connection.connection is kept


def test_any_other_receiver_of_request_finished_still_hears_a_hot_path_answer() -> None:
    sale = make_sale(starts_in=3600)
    _, token = make_shopper()
    heard: list[object] = []

    def receiver(sender: object, **kwargs: object) -> None:
        heard.append(sender)

    request_finished.connect(receiver)
    try:
        _call(application, f"/api/sales/{sale.pk}/purchase/", token=token)
    finally:
        request_finished.disconnect(receiver)
    assert heard == [WSGIHandler]
    _call(application, f"/api/sales/{sale.pk}/purchase/", token=token)
    assert heard == [WSGIHandler]


def test_a_cache_whose_close_does_something_is_closed_at_a_hot_path_answer() -> None:
    assert _cache_close_is_noop(settings.CACHES["default"])  # the shipped cache: nothing to close
    closing = {**settings.CACHES["default"], "OPTIONS": {"CLOSE_CONNECTION": True}}
    assert not _cache_close_is_noop(closing)
    assert _cache_close_is_noop({"BACKEND": "django.core.cache.backends.locmem.LocMemCache"})
    assert not _cache_close_is_noop({"BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache"})


def test_a_win_on_the_hot_path_still_kicks_the_drain_after_its_answer() -> None:
    sale = make_sale(stock=5)
    _, token = make_shopper()
    environ_answer: list[Any] = []
    result = application(
        {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": f"/api/sales/{sale.pk}/purchase/",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b"{}"),
            "wsgi.errors": sys.stderr,
            "CONTENT_LENGTH": "2",
            "CONTENT_TYPE": "application/json",
            "REMOTE_ADDR": "127.0.0.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_AUTHORIZATION": f"Token {token}",
        },
        lambda status, headers: environ_answer.append(status),
    )
    b"".join(result)
    kicked: list[object] = []
    result.response.after_send = lambda: kicked.append(True)  # type: ignore[attr-defined]
    result.close()  # type: ignore[attr-defined]
    assert environ_answer == ["201 Created"]
    assert kicked == [True]


def test_a_place_read_on_the_hot_path_is_the_bytes_django_json_gives() -> None:
    sale = make_sale(starts_in=3600, admission=Admission.QUEUE, pre_queue_opens_at=timezone.now())
    shopper, token = make_shopper()
    place = queue_join(sale_id=sale.pk, user_id=shopper.pk)
    path = f"/api/sales/{sale.pk}/queue/"
    environ_extra = {"HTTP_QUEUE_PASS": place.queue_pass}

    routed = _call(application, path, token=token, method="GET", body=b"", extra=environ_extra)
    through_django = _call(django_application, path, token=token, method="GET", body=b"", extra=environ_extra)

    expected = JsonResponse(place_body(queue_place(sale_id=sale.pk, user_id=shopper.pk, queue_pass=place.queue_pass)))
    assert routed[0] == through_django[0] == "200 OK"
    assert routed[2] == through_django[2] == expected.content
    assert routed[1]["Content-Type"] == expected["Content-Type"]
    assert routed[1]["Content-Length"] == str(len(expected.content))
