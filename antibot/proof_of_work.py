"""The proof-of-work rule of the contract, and a solver.

A ``solution`` (at most 64 characters) is valid for a ``challenge`` when
``sha256((challenge + solution).encode("utf-8"))`` has at least ``difficulty`` leading zero
bits. The browser's solver (``static/storefront/pow-worker.js``) follows the same rule.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools

MAX_SOLUTION_LENGTH = 64


def leading_zero_bits(digest: bytes) -> int:
    value = int.from_bytes(digest, "big")
    return len(digest) * 8 - value.bit_length()


def solution_is_valid(challenge: str, solution: str, difficulty: int) -> bool:
    if len(solution) > MAX_SOLUTION_LENGTH:
        return False
    try:
        text = (challenge + solution).encode("utf-8")
    except UnicodeEncodeError:  # A lone surrogate: no UTF-8 text, so no solution.
        return False
    digest = hashlib.sha256(text).digest()
    return leading_zero_bits(digest) >= difficulty


def solve(challenge: str, difficulty: int, *, start: int = 0) -> str:
    """The first decimal counter from ``start`` that solves the challenge (2**difficulty
    hashes on average; about a million a second in CPython)."""
    prefix = hashlib.sha256(challenge.encode("utf-8"))
    limit = 1 << (256 - difficulty)
    for counter in itertools.count(start):
        candidate = str(counter)
        attempt = prefix.copy()
        attempt.update(candidate.encode("ascii"))
        if int.from_bytes(attempt.digest(), "big") < limit:
            return candidate
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> int:
    """``python -m antibot.proof_of_work <challenge> <difficulty>`` prints a solution."""
    parser = argparse.ArgumentParser(description="Solve a flash-sale proof-of-work challenge.")
    parser.add_argument("challenge")
    parser.add_argument("difficulty", type=int)
    args = parser.parse_args(argv)
    if not 0 <= args.difficulty <= 32:
        parser.error("difficulty is between 0 and 32 leading zero bits")
    print(solve(args.challenge, args.difficulty))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
