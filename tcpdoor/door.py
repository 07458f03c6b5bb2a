"""What each message asks and how it is answered, with the REST API's purchase core.

Every message is turned into steps (``core.steps``) of the same functions the REST API
drives: identity (``accounts``), the sale a client names (``sales.selectors``), the attempt
(``sales.purchase.purchase_steps``: the funnel, the proof of work, ``purchase.lua``, the
events, the counts, Idempotency-Key). ``Door.answer`` runs them up to their first round
trip in the caller's frame: a local answer (sold out, over a window, not started) is
answered at once with no task and no await; anything else is a coroutine that finishes
them on the asyncio Redis client. Every failure becomes an answer; nothing raises out.

Answer bodies (docs/tcp.md):

- the purchase's are the REST API's (``sales.purchase.answer_body``), plus ``retry_after_ms``
  where the REST API sets ``Retry-After``;
- bytes that are not a UTF-8 JSON object get the seed's ``{"status": "ERROR", "error": ...}``;
- a JSON object with wrong fields gets the REST API's ``INVALID_REQUEST``, and every other
  error its code (``UNAUTHENTICATED``, ``NOT_FOUND``, ``UNAVAILABLE``, ...).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from accounts.selectors import user_id_for_gateway_steps, user_id_for_token_steps
from antibot.challenges import MAX_CHALLENGE_LENGTH
from antibot.idempotency import IdempotentRequest
from antibot.proof_of_work import MAX_SOLUTION_LENGTH
from core.errors import InvalidRequest, ServerError, Unauthenticated, as_application_error, error_frame_body
from core.metrics import purchase_observed
from core.steps import Answered, AsyncClient, Step, Steps, drive_async, start
from sales.outcomes import PurchaseAnswer, PurchaseStatus, answer_body
from sales.passes import MAX_PASS_LENGTH
from sales.purchase import drain_kick, purchase_steps, sale_challenge_steps
from sales.selectors import SaleState, sale_id_for_reference_steps, sale_state_steps
from sales.tally import tally
from sales.waiting_room import Place, place_body, queue_join_steps, queue_place_steps

from .frames import MessageType, error_frame, frame, json_frame

logger = logging.getLogger(__name__)

_ATTEMPT_FIELDS = frozenset({"product_id", "token", "user_id", "challenge", "solution", "idempotency_key", "pass"})
_JOIN_FIELDS = frozenset({"product_id", "token", "user_id", "challenge", "solution"})
_PLACE_FIELDS = frozenset({"product_id", "token", "user_id", "pass"})
_IDENTIFIED_FIELDS = frozenset({"product_id", "token", "user_id"})
_SALE_FIELDS = frozenset({"product_id"})


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer frame, and blocking work to run once it is written (the drain's kick)."""

    frame: bytes
    after: Callable[[], None] | None = None


Pending = Coroutine[Any, Any, Reply]


class Malformed(Exception):
    """The payload is not a UTF-8 JSON object: the seed's ERROR answer."""


@dataclass(slots=True)
class _Attempt:
    """What the metric of one purchase attempt needs, learnt as its steps run."""

    started: float
    sale_id: int | None = None


class Door:
    """The answers of one TCP server process. ``trust_user_id``: the seed's bare ``user_id``
    names the shopper (a gateway authenticated them); otherwise only a token does."""

    def __init__(self, *, redis: AsyncClient, trust_user_id: bool) -> None:
        self.redis = redis
        self.trust_user_id = trust_user_id

    def answer(self, kind: int, payload: bytes, peer_ip: str) -> Reply | Pending:
        """The answer to one well-framed message: a ``Reply`` now, or a coroutine (awaited by
        the server, answers kept in request order) when a round trip is needed."""
        if kind == MessageType.ATTEMPT_PURCHASE:
            return self._attempt(payload, peer_ip)
        if kind == MessageType.PING:
            return _PONG
        try:
            request = _decoded(payload)
        except Malformed as error:
            return Reply(error_frame(kind, str(error)))
        if kind == MessageType.CHALLENGE:
            return self._run(kind, self._challenge_steps(request, peer_ip), _challenge_reply, _error_reply)
        if kind in (MessageType.JOIN_QUEUE, MessageType.QUEUE_PLACE):
            return self._run(
                kind, self._queue_steps(kind, request, peer_ip), functools.partial(_place_reply, kind), _error_reply
            )
        return self._run(kind, self._sale_state_steps(request), _sale_state_reply, _error_reply)

    # --- The purchase -------------------------------------------------------------------

    def _attempt(self, payload: bytes, peer_ip: str) -> Reply | Pending:
        attempt = _Attempt(started=time.perf_counter())
        try:
            request = _decoded(payload)
        except Malformed as error:
            return _attempt_failed(kind=MessageType.ATTEMPT_PURCHASE, attempt=attempt, error=error)
        return self._run(
            MessageType.ATTEMPT_PURCHASE,
            self._attempt_steps(request, peer_ip, attempt),
            functools.partial(_attempt_reply, attempt=attempt),
            functools.partial(_attempt_failed, attempt=attempt),
        )

    def _attempt_steps(self, request: dict[str, Any], peer_ip: str, attempt: _Attempt) -> Steps[PurchaseAnswer]:
        _only(request, _ATTEMPT_FIELDS)
        challenge = _text(request, "challenge", MAX_CHALLENGE_LENGTH)
        solution = _text(request, "solution", MAX_SOLUTION_LENGTH)
        queue_pass = _text(request, "pass", MAX_PASS_LENGTH)
        key = request.get("idempotency_key")
        if key is not None and not isinstance(key, str):
            raise InvalidRequest("idempotency_key must be a string.")
        user_id = yield from self._identity_steps(request)
        sale_id = yield from sale_id_for_reference_steps(_reference(request))
        attempt.sale_id = sale_id
        idempotency = None
        if key is not None:
            fingerprinted = json.dumps(
                {"challenge": challenge, "solution": solution, "pass": queue_pass}, sort_keys=True
            ).encode()
            idempotency = IdempotentRequest.from_header(
                key, method="TCP", path=f"ATTEMPT_PURCHASE {sale_id}", body=fingerprinted
            )
        return (
            yield from purchase_steps(
                sale_id=sale_id,
                user_id=user_id,
                client_ip="" if self.trust_user_id else peer_ip,
                challenge=challenge,
                solution=solution,
                idempotency=idempotency,
                queue_pass=queue_pass,
            )
        )

    def _queue_steps(self, kind: int, request: dict[str, Any], peer_ip: str) -> Steps[Place]:
        """JOIN_QUEUE: join the sale's line (with a proof of work when it asks for one);
        QUEUE_PLACE: the shopper's place, from their ``pass`` without a round trip."""
        joining = kind == MessageType.JOIN_QUEUE
        _only(request, _JOIN_FIELDS if joining else _PLACE_FIELDS)
        user_id = yield from self._identity_steps(request)
        sale_id = yield from sale_id_for_reference_steps(_reference(request))
        if joining:
            return (
                yield from queue_join_steps(
                    sale_id=sale_id,
                    user_id=user_id,
                    client_ip="" if self.trust_user_id else peer_ip,
                    challenge=_text(request, "challenge", MAX_CHALLENGE_LENGTH),
                    solution=_text(request, "solution", MAX_SOLUTION_LENGTH),
                )
            )
        return (
            yield from queue_place_steps(
                sale_id=sale_id, user_id=user_id, queue_pass=_text(request, "pass", MAX_PASS_LENGTH)
            )
        )

    def _identity_steps(self, request: dict[str, Any]) -> Steps[int]:
        """The shopper: a REST access token, or in trusted mode the gateway's ``user_id``."""
        if "user_id" in request:
            if not self.trust_user_id:
                raise Unauthenticated("This door does not take user_id; send your access token as token.")
            return (yield from user_id_for_gateway_steps(request["user_id"]))
        token = request.get("token")
        if not isinstance(token, str) or not token:
            raise Unauthenticated("Send your access token as token.")
        return (yield from user_id_for_token_steps(token))

    # --- Challenges and sale status -----------------------------------------------------

    def _challenge_steps(self, request: dict[str, Any], peer_ip: str) -> Steps[tuple[int, Any]]:
        _only(request, _IDENTIFIED_FIELDS)
        user_id = yield from self._identity_steps(request)
        sale_id = yield from sale_id_for_reference_steps(_reference(request))
        issued = yield from sale_challenge_steps(
            sale_id=sale_id, user_id=user_id, client_ip="" if self.trust_user_id else peer_ip
        )
        return sale_id, issued

    def _sale_state_steps(self, request: dict[str, Any]) -> Steps[SaleState]:
        _only(request, _SALE_FIELDS)
        sale_id = yield from sale_id_for_reference_steps(_reference(request))
        return (yield from sale_state_steps(sale_id))

    # --- Running steps ------------------------------------------------------------------

    def _run(
        self,
        kind: int,
        steps: Generator[Step, Any, Any],
        finish: Callable[..., Reply],
        failed: Callable[..., Reply],
    ) -> Reply | Pending:
        try:
            begun = start(steps)
        except Exception as error:  # noqa: BLE001 - every failure is an answer
            return failed(kind=kind, error=error)
        if isinstance(begun, Answered):
            return finish(begun.value)
        return self._finish(kind, steps, begun, finish, failed)

    async def _finish(
        self,
        kind: int,
        steps: Generator[Step, Any, Any],
        first: Step,
        finish: Callable[..., Reply],
        failed: Callable[..., Reply],
    ) -> Reply:
        try:
            value = await drive_async(steps, self.redis, first=first)
        except Exception as error:  # noqa: BLE001 - every failure is an answer
            return failed(kind=kind, error=error)
        return finish(value)


# --- Payloads ---------------------------------------------------------------------------


def _decoded(payload: bytes) -> dict[str, Any]:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("invalid utf-8") from None
    try:
        request = json.loads(text)
    except (ValueError, RecursionError):
        raise Malformed("invalid json") from None
    if not isinstance(request, dict):
        raise Malformed("invalid json: the payload must be a JSON object")
    return request


def _only(request: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = set(request) - allowed
    if unknown:
        raise InvalidRequest(f"Unknown field(s): {', '.join(sorted(unknown))}.")


def _text(request: dict[str, Any], name: str, longest: int) -> str | None:
    value = request.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string.")
    if len(value) > longest:
        raise InvalidRequest(f"{name} must be at most {longest} characters.")
    return value


def _reference(request: dict[str, Any]) -> str | int:
    reference = request.get("product_id")
    if reference is None:
        raise InvalidRequest("product_id is required: a product slug or a sale id.")
    if isinstance(reference, bool) or not isinstance(reference, str | int):
        raise InvalidRequest("product_id must be a product slug or a sale id.")
    return reference


# --- Answers ----------------------------------------------------------------------------

_PONG = Reply(json_frame(MessageType.PING, {"status": "OK"}))


@functools.lru_cache(maxsize=512)
def _constant_frame(status: PurchaseStatus, detail: str, reason: str) -> bytes:
    """A purchase answer that carries nothing of its own request, encoded once per process."""
    return json_frame(MessageType.ATTEMPT_PURCHASE, answer_body(PurchaseAnswer(status, detail=detail, reason=reason)))


@functools.lru_cache(maxsize=512)
def _body_prefix(status: PurchaseStatus, detail: str, reason: str) -> bytes:
    """The JSON of a body that carries nothing of its own request, without its closing brace."""
    body = json.dumps(answer_body(PurchaseAnswer(status, detail=detail, reason=reason)), separators=(",", ":"))
    return body[:-1].encode()


def _attempt_reply(answer: PurchaseAnswer, *, attempt: _Attempt) -> Reply:
    if answer.carries_own_body:
        encoded = json_frame(MessageType.ATTEMPT_PURCHASE, answer_body(answer))
    elif answer.retry_after_ms is not None:  # a crowd's 429s: only the wait differs
        payload = b'%s,"retry_after_ms":%d}' % (
            _body_prefix(answer.status, answer.detail, answer.reason),
            answer.retry_after_ms,
        )
        encoded = frame(MessageType.ATTEMPT_PURCHASE, payload)
    else:
        encoded = _constant_frame(answer.status, answer.detail, answer.reason)
    _observe(attempt, answer.status.value)
    sale_id = attempt.sale_id
    if answer.kick_drain and sale_id is not None:
        return Reply(encoded, after=lambda: drain_kick(sale_id))
    return Reply(encoded)


def _attempt_failed(*, kind: int, attempt: _Attempt, error: Exception) -> Reply:
    reply, code = _failure(kind, error)
    known = attempt.sale_id if code != "NOT_FOUND" else None
    attempt.sale_id = known
    _observe(attempt, code)
    return reply


def _observe(attempt: _Attempt, code: str) -> None:
    seconds = time.perf_counter() - attempt.started
    purchase_observed(sale_id=attempt.sale_id, status=code, seconds=seconds, transport="tcp")
    if attempt.sale_id is not None:
        tally.answered(attempt.sale_id, seconds)


def _error_reply(*, kind: int, error: Exception) -> Reply:
    return _failure(kind, error)[0]


def _failure(kind: int, raised: Exception) -> tuple[Reply, str]:
    """The TCP door's one translation of a failure: the answer, and its code for the metric."""
    if isinstance(raised, Malformed):
        return Reply(error_frame(kind, str(raised))), "ERROR"
    error = as_application_error(raised)
    if error is None:
        logger.error("the TCP door failed to answer a 0x%02x message", kind, exc_info=raised)
        error = ServerError()
    return Reply(json_frame(kind, error_frame_body(error))), error.code


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def _challenge_reply(value: tuple[int, Any]) -> Reply:
    sale_id, issued = value
    body = {
        "status": "OK",
        "sale_id": sale_id,
        "challenge": issued.challenge,
        "difficulty": issued.difficulty,
        "expires_at": issued.expires_at.isoformat(),
    }
    return Reply(json_frame(MessageType.CHALLENGE, body))


def _place_reply(kind: int, place: Place) -> Reply:
    """The REST API's place, with the door's ``status`` OK and the place's own as
    ``place_status`` (as SALE_STATUS carries ``sale_status``)."""
    body = place_body(place)
    body["place_status"] = body.pop("status")
    return Reply(json_frame(kind, {"status": "OK", **body}))


def _sale_state_reply(state: SaleState) -> Reply:
    body = {
        "status": "OK",
        "sale_id": state.sale_id,
        "product_id": state.product_id,
        "price": state.price,
        "total_stock": state.total_stock,
        "remaining_stock": state.remaining_stock,
        "starts_at": _iso(state.starts_at_ms),
        "ends_at": _iso(state.ends_at_ms),
        "sale_status": state.status.value,
        "server_time": _iso(state.now_ms),
    }
    return Reply(json_frame(MessageType.SALE_STATUS, body))
