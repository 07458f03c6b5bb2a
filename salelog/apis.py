"""The transparency log's API (docs/design.md, "The transparency log"): the keys, a sale's
newest checkpoint, its entries page by page, and inclusion and consistency proofs. Public
and read-only; entries and proofs are served for what the newest checkpoint covers, during
the sale as after it."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import ErrorSerializer, InvalidRequest, NotFound

from .selectors import (
    ENTRIES_PAGE_MAX,
    PublishedLog,
    checkpoint_latest,
    entries_page,
    published_keys,
    published_log,
    stored_consistency_proof,
    stored_inclusion_proof,
)

MAX_COUNT = 2**63 - 1
"""The largest index or size a query may name (PostgreSQL's bigint)."""

NOT_FOUND = OpenApiResponse(ErrorSerializer, description="NOT_FOUND: no such sale")
INVALID = OpenApiResponse(ErrorSerializer, description="INVALID_REQUEST: a parameter missing, malformed, out of range")


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _count(request: Request, name: str, *, default: int | None = None) -> int:
    """A query parameter that counts entries: decimal digits, at most ``MAX_COUNT``."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        if default is None:
            raise InvalidRequest(f"{name} is required: a whole number.")
        return default
    if not (raw.isascii() and raw.isdigit()):
        raise InvalidRequest(f"{name} must be a whole number in decimal digits.")
    if len(raw.lstrip("0")) > len(str(MAX_COUNT)) or int(raw) > MAX_COUNT:
        raise InvalidRequest(f"{name} is larger than any log.")
    return int(raw)


def _log(sale_id: int) -> PublishedLog:
    log = published_log(sale_id)
    if log is None:
        raise NotFound("There is no such sale.")
    return log


def _count_parameter(name: str, description: str, *, required: bool = True) -> OpenApiParameter:
    return OpenApiParameter(
        name, OpenApiTypes.INT64, OpenApiParameter.QUERY, required=required, description=description
    )


class LogApi(APIView):
    """A public read of the log: no identity is read."""

    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []


class LogKeysApi(LogApi):
    class OutputSerializer(serializers.Serializer):
        key_id = serializers.CharField(help_text="The id receipts name in their key_id.")
        public_key = serializers.CharField(help_text="The raw 32-byte Ed25519 public key, base64.")

    @extend_schema(
        responses={200: OutputSerializer(many=True)},
        summary="The keys that sign receipts and checkpoints (the first signs now)",
    )
    def get(self, request: Request) -> Response:
        return Response([{"key_id": key.key_id, "public_key": key.public_base64} for key in published_keys()])


class _AnyAccept(BaseContentNegotiation):
    """The checkpoint is text whatever the client accepts; an error is the contract's JSON."""

    def select_parser(self, request: Request, parsers: Any) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: Any = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


class CheckpointApi(LogApi):
    content_negotiation_class = _AnyAccept

    @extend_schema(
        responses={
            (200, "text/plain"): OpenApiResponse(
                OpenApiTypes.STR,
                description="A C2SP signed note: the origin, the tree size, the base64 root hash, a blank line, "
                "one Ed25519 signature line by the origin's key",
            ),
            404: OpenApiResponse(ErrorSerializer, description="NOT_FOUND: no such sale, or no checkpoint yet"),
        },
        summary="The sale's newest checkpoint (after the sale: its final one)",
    )
    def get(self, request: Request, sale_id: int) -> HttpResponse:
        _log(sale_id)
        checkpoint = checkpoint_latest(sale_id)
        if checkpoint is None:
            raise NotFound("The sale's log has no checkpoint yet.")
        response = HttpResponse(checkpoint.note, content_type="text/plain; charset=utf-8")
        response["Cache-Control"] = "no-cache"
        return response


class LogEntriesApi(LogApi):
    class OutputSerializer(serializers.Serializer):
        seq = serializers.IntegerField(help_text="The entry's index in the log, from 0.")
        entry = serializers.CharField(help_text="The base64 of the exact bytes that were hashed (canonical JSON).")
        leaf_hash = serializers.CharField(help_text="The RFC 9162 leaf hash, lowercase hex.")

    @extend_schema(
        parameters=[
            _count_parameter("start", "The first seq (default 0); at most the log's size.", required=False),
            _count_parameter(
                "end",
                f"One past the last seq (default: the log's size); a page ends at start + {ENTRIES_PAGE_MAX} at "
                "most, and at the log's size.",
                required=False,
            ),
            OpenApiParameter(
                "Link",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                response=[200],
                description='<...?start=E&end=...>; rel="next" while the range asked for goes on past this page',
            ),
        ],
        responses={200: OutputSerializer(many=True), 400: INVALID, 404: NOT_FOUND},
        summary=f"The log's entries [start, end), at most {ENTRIES_PAGE_MAX} a page",
    )
    def get(self, request: Request, sale_id: int) -> Response:
        log = _log(sale_id)
        start = _count(request, "start", default=0)
        if start > log.size:
            raise InvalidRequest(f"start is past the log's {log.size} entries.")
        asked = _count(request, "end", default=log.size)
        if asked < start:
            raise InvalidRequest("end is before start.")
        wanted = min(asked, log.size)
        end = min(wanted, start + ENTRIES_PAGE_MAX)
        page = entries_page(sale_id=sale_id, start=start, end=end)
        response = Response(
            [{"seq": item.seq, "entry": _b64(item.entry), "leaf_hash": item.leaf_hash.hex()} for item in page]
        )
        if end < wanted:
            response["Link"] = f'<{request.path}?start={end}&end={wanted}>; rel="next"'
        return response


class ProofSerializer(serializers.Serializer):
    hashes = serializers.ListField(child=serializers.CharField(), help_text="base64 SHA-256 hashes, in RFC 9162 order.")


class InclusionProofApi(LogApi):
    @extend_schema(
        parameters=[
            _count_parameter("index", "The leaf's seq; below size."),
            _count_parameter("size", "The tree size the proof is for; at most the log's size."),
        ],
        responses={200: ProofSerializer, 400: INVALID, 404: NOT_FOUND},
        summary="The RFC 9162 audit path of entry index in the tree of size entries",
    )
    def get(self, request: Request, sale_id: int) -> Response:
        log = _log(sale_id)
        index, size = _count(request, "index"), _count(request, "size")
        if size > log.size:
            raise InvalidRequest(f"size is larger than the log ({log.size} entries).")
        if index >= size:
            raise InvalidRequest("index must be below size.")
        hashes = stored_inclusion_proof(sale_id=sale_id, index=index, size=size)
        return Response({"hashes": [_b64(value) for value in hashes]})


class ConsistencyProofApi(LogApi):
    @extend_schema(
        parameters=[
            _count_parameter("first", "The older tree's size; at least 1, at most second."),
            _count_parameter("second", "The newer tree's size; at most the log's size."),
        ],
        responses={200: ProofSerializer, 400: INVALID, 404: NOT_FOUND},
        summary="The RFC 9162 consistency proof from the tree of first entries to the tree of second",
    )
    def get(self, request: Request, sale_id: int) -> Response:
        log = _log(sale_id)
        first, second = _count(request, "first"), _count(request, "second")
        if second > log.size:
            raise InvalidRequest(f"second is larger than the log ({log.size} entries).")
        if first > second:
            raise InvalidRequest("first is larger than second.")
        if first == 0:
            raise InvalidRequest("first must be at least 1: nothing is proved from the empty tree.")
        hashes = stored_consistency_proof(sale_id=sale_id, first=first, second=second)
        return Response({"hashes": [_b64(value) for value in hashes]})
