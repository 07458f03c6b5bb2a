"""The refusal a full admission window leads to, and how long it asks the client to wait."""

from __future__ import annotations

import math

from core.errors import ApplicationError


def wait_sentence(why: str, retry_after_ms: int) -> tuple[int, str]:
    """Whole seconds to wait (at least 1: what ``Retry-After`` says) and the sentence that
    tells a shopper so."""
    seconds = max(1, math.ceil(retry_after_ms / 1000))
    return seconds, f"{why}; try again in {seconds} s."


class RateLimited(ApplicationError):
    code = "RATE_LIMITED"

    def __init__(self, retry_after_ms: int, *, reason: str = "", why: str = "Too many attempts") -> None:
        seconds, detail = wait_sentence(why, retry_after_ms)
        super().__init__(
            detail,
            headers={"Retry-After": str(seconds)},
            extra={"reason": reason} if reason else None,
        )
