"""The OpenAPI schema (drf-spectacular) says every answer an endpoint can give.

``ContractAutoSchema`` adds the answers that come from the stack rather than from one view,
so no endpoint can forget them: 503 ``UNAVAILABLE`` (Redis or PostgreSQL away) everywhere,
400 ``INVALID_REQUEST`` and 415 wherever a body is read, 404 wherever the path carries an
id, and ``Retry-After`` on every 429 and 503. A ``ClosedSerializer`` request body is
``additionalProperties: false``; a view whose ``request_body_optional`` is true takes no
body as well (the token endpoint's renewal).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse

from .errors import ErrorSerializer
from .hot_path import HotPathApi

RETRY_AFTER_HEADER = {
    "Retry-After": {
        "schema": {"type": "integer", "minimum": 1},
        "description": "Seconds to wait before trying again.",
        "required": True,
    }
}

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def error_response(description: str) -> OpenApiResponse:
    """An answer with the contract's error body; ``description`` names its status codes."""
    return OpenApiResponse(ErrorSerializer, description=description)


class ContractAutoSchema(AutoSchema):
    def _stack_answers(self) -> dict[str, str]:
        answers = {"503": "UNAVAILABLE: Redis or PostgreSQL is away; nothing was changed (Retry-After set)"}
        if self.method in _BODY_METHODS and self.get_request_serializer() is not None:
            answers["400"] = "INVALID_REQUEST: the body is not valid (malformed JSON, wrong types, too large)"
            if not isinstance(self.view, HotPathApi):  # DRF's parsers refuse other media types
                answers["415"] = "UNSUPPORTED_MEDIA_TYPE: send application/json"
        if "{" in self.path:
            answers["404"] = "NOT_FOUND"
        return answers

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        for code, description in self._stack_answers().items():
            if code not in responses:
                responses[code] = self._get_response_for_code(error_response(description), code, direction=direction)
        for code in ("429", "503"):
            if code in responses:
                responses[code].setdefault("headers", {}).update(RETRY_AFTER_HEADER)
        return responses

    def _get_request_body(self, direction: Any = "request") -> dict[str, Any] | None:
        body: dict[str, Any] | None = super()._get_request_body(direction)
        if body is not None and getattr(self.view, "request_body_optional", False):
            body.pop("required", None)
        return body

    def _map_basic_serializer(self, serializer: Any, direction: Any) -> dict[str, Any]:
        schema: dict[str, Any] = super()._map_basic_serializer(serializer, direction)
        if direction == "request" and getattr(serializer, "refuses_unknown_fields", False):
            schema["additionalProperties"] = False
        return schema
