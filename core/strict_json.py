"""JSON request bodies taken strictly: what a hostile client sends answers 400, never 500.

``json_body_load`` is the one reading of a JSON body (DRF's parser and the hot path both use
it): malformed UTF-8, nesting deep enough to exhaust the parser's recursion, integers too long
to convert, ``NaN``/``Infinity``, and lone surrogates (``"\\udc80"`` is valid JSON but no
valid text: it cannot be stored, hashed or rendered) are refused as ``InvalidRequest``.

The serializer fields here take only JSON strings: DRF's ``CharField`` turns ``42`` into
``"42"``, so a number would become a username. ``ClosedSerializer`` refuses fields it does
not declare, so a misspelt field is an error, not silently ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rest_framework import serializers
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from .errors import InvalidRequest


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def json_body_load(raw: bytes | str) -> Any:
    """The body's JSON value. Raises ``InvalidRequest`` saying what is wrong with it."""
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise InvalidRequest("The body is nested too deeply.") from None
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("The body is not valid JSON.") from None
    if not text_is_clean(value):
        raise InvalidRequest("The body holds a lone surrogate (\\ud800-\\udfff): not valid text.")
    return value


def utf8_encodable(text: str) -> bool:
    """False for text a JSON decoder can hand over but UTF-8 cannot carry (a lone surrogate
    escape such as ``"\\udc80"``)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def text_is_clean(value: Any) -> bool:
    """True when every string in ``value`` (keys included) encodes as UTF-8."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    except RecursionError:  # Nested within the parser's limit but past the encoder's.
        return False
    return True


class StrictJSONParser(JSONParser):
    """DRF's JSON parser with ``json_body_load``'s refusals as ``ParseError`` (400)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        try:
            return json_body_load(stream.read())
        except InvalidRequest as refused:
            raise ParseError(refused.detail) from None


class _StringsOnly:
    """Take a JSON string only: no number, boolean, list or object turned into text."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            raise serializers.ValidationError("Must be a string.", code="invalid")
        return super().to_internal_value(data)  # type: ignore[misc]


class StrictCharField(_StringsOnly, serializers.CharField):
    pass


class StrictRegexField(_StringsOnly, serializers.RegexField):
    pass


class StrictEmailField(_StringsOnly, serializers.EmailField):
    pass


class ClosedSerializer(serializers.Serializer):
    """Refuses a body that is not an object or carries a field it does not declare (400).
    The OpenAPI schema says so (``additionalProperties: false``, ``core.openapi``)."""

    refuses_unknown_fields = True

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(str(name) for name in data if name not in self.fields)
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field: not accepted here."] for name in unknown})
        return super().to_internal_value(data)
