"""The base of the hot path's endpoints (challenge, purchase).

``dispatch`` skips DRF's per-request machinery (request wrapping, content negotiation,
authenticator and renderer instances), which DESIGN.md measured at a large share of a
request's cost; ``post`` reads Django's request and answers JSON itself. DRF and
drf-spectacular still see an ``APIView``, so the OpenAPI schema describes these endpoints
from their serializers like any other.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from rest_framework.views import APIView

from .errors import MethodNotAllowed, error_json_response


class HotPathApi(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:  # type: ignore[override]
        self.args, self.kwargs, self.request = args, kwargs, request  # type: ignore[assignment]
        if request.method != "POST":
            response = error_json_response(MethodNotAllowed(f"{request.method} is not allowed here; use POST."))
            response["Allow"] = "POST"
            return response
        return self.post(request, **kwargs)  # type: ignore[attr-defined, no-any-return]
