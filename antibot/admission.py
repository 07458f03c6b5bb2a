"""Admission limits: per-user and per-IP windows and the refusal they lead to.

The windows are counted inside the caller's atomic script (one round trip); this module
supplies their settings and the error a refusal raises.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.conf import settings

from core.errors import ApplicationError


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    """The per-user and per-IP windows (0 turns one off) and the spent-challenge lifetime."""

    user_limit: int = 0
    ip_limit: int = 0
    window_seconds: int = 1
    challenge_ttl_seconds: int = 0


NO_LIMITS = AdmissionLimits()


def admission_limits() -> AdmissionLimits:
    return AdmissionLimits(
        user_limit=settings.ANTIBOT_USER_LIMIT,
        ip_limit=settings.ANTIBOT_IP_LIMIT,
        window_seconds=settings.ANTIBOT_RATE_WINDOW_SECONDS,
        challenge_ttl_seconds=settings.ANTIBOT_CHALLENGE_TTL_SECONDS,
    )


class RateLimited(ApplicationError):
    http_status = 429
    code = "RATE_LIMITED"

    def __init__(self, retry_after_ms: int, *, reason: str = "") -> None:
        seconds = max(1, math.ceil(retry_after_ms / 1000))
        super().__init__(
            f"Too many attempts; try again in {seconds} s.",
            headers={"Retry-After": str(seconds)},
            extra={"reason": reason} if reason else None,
        )
