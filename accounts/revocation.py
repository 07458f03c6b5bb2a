"""Revoking access tokens before they expire: every token of a user issued before an
instant is refused, by every process, within the time a pub/sub message takes.

Redis keeps ``auth:revoked`` (user id -> "not before", Redis-clock ms) so a process that
starts, or whose subscription comes back after an outage, loads the whole set; the
``flashsale_auth_revocations`` channel carries each revocation to the processes listening.
An entry matters for ``ACCESS_TOKEN_LIFETIME_SECONDS`` at most (older tokens expired anyway),
so the hash expires that long after the last revocation.

What a process keeps of a user besides a token's claims (the session hash, the TCP gateway's
active users: ``accounts.selectors``) is kept with the user's "not before" as it stood when it
was read (``not_before``), and read again once that moved: a revocation's one message
refuses tokens and drops those too.
"""

from __future__ import annotations

import threading
from pathlib import Path

from django.conf import settings

from core.events import subscription
from core.process_state import forgets_process_state
from core.redis_store import inventory_redis, lua_script
from core.steps import CommandCall, Steps

from .tokens import TokenClaims

REVOKE_SCRIPT = lua_script(Path(__file__).resolve().parent / "lua" / "revoke.lua")
REVOKED_KEY = "auth:revoked"
REVOCATIONS_CHANNEL = "flashsale_auth_revocations"


class Revocations:
    def __init__(self) -> None:
        self._not_before: dict[int, int] = {}
        self._lock = threading.Lock()
        self.heard_count = 0
        """Revocations heard (and reloads): a read that began before it moved may be stale."""

    def refuses(self, claims: TokenClaims) -> bool:
        """The hot path's check: one dict lookup."""
        not_before = self._not_before.get(claims.user_id)
        return not_before is not None and claims.issued_at_ms < not_before

    def not_before(self, user_id: int) -> int:
        """The user's "not before" as this process knows it (0: never revoked)."""
        return self._not_before.get(user_id, 0)

    def refuses_in_redis(self, claims: TokenClaims) -> bool:
        """The same check against Redis's copy (one round trip)."""
        return refused_by_record(claims, inventory_redis().hget(REVOKED_KEY, str(claims.user_id)))  # type: ignore[arg-type]

    def heard(self, event: dict[str, object]) -> None:
        try:
            user_id, not_before = int(event["user_id"]), int(event["not_before_ms"])  # type: ignore[call-overload]
        except (KeyError, TypeError, ValueError):
            return
        with self._lock:
            self._not_before[user_id] = max(not_before, self._not_before.get(user_id, 0))
            self.heard_count += 1

    def reload_steps(self) -> Steps[None]:
        """The whole set from Redis, as steps (the subscription just went live: nothing was
        missed from here on, and anything missed before is in the hash)."""
        stored = yield CommandCall(("HGETALL", REVOKED_KEY))
        with self._lock:
            for user, not_before in dict(stored).items():
                self._not_before[int(user)] = max(int(not_before), self._not_before.get(int(user), 0))
            self.heard_count += 1

    def forget(self) -> None:
        with self._lock:
            self._not_before.clear()
            self.heard_count += 1


def revocation_record_call(user_id: int) -> CommandCall:
    """Redis's "not before" of the user, as a step (read it with ``refused_by_record`` or
    ``not_before_of_record``)."""
    return CommandCall(("HGET", REVOKED_KEY, str(int(user_id))))


def not_before_of_record(stored: str | bytes | None) -> int:
    return int(stored) if stored is not None else 0


def refused_by_record(claims: TokenClaims, stored: str | bytes | None) -> bool:
    return stored is not None and claims.issued_at_ms < int(stored)


revocations = Revocations()
forgets_process_state(revocations.forget)
subscription.listen(REVOCATIONS_CHANNEL, revocations.heard)
subscription.on_live(revocations.reload_steps)


def user_tokens_revoke(*, user_id: int) -> int:
    """Refuse every token issued to the user until now (``lua/revoke.lua``: record and
    announce in one atomic call). Returns the instant (Redis ms)."""
    not_before_ms = REVOKE_SCRIPT(
        [REVOKED_KEY],
        [int(user_id), settings.ACCESS_TOKEN_LIFETIME_SECONDS + 60, REVOCATIONS_CHANNEL],
        client=inventory_redis(),
    )
    return int(not_before_ms)
