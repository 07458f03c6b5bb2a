"""The anti-bot measures' Redis keys, inside a keyspace the caller owns.

The caller passes its keyspace (a sale passes ``sale:{<id>}``, hash tag included), so these
keys land on the caller's Redis Cluster slot and its scripts can touch them in one call;
antibot itself knows nothing of what the keyspace belongs to.
"""

from __future__ import annotations


def spent_challenge_key(keyspace: str, nonce: str) -> str:
    """A spent proof-of-work challenge (single use)."""
    return f"{keyspace}:pow:{nonce}"


def challenge_rate_key(keyspace: str) -> str:
    """Challenges issued in the current second (drives the adaptive difficulty)."""
    return f"{keyspace}:challenges"


def idempotency_records_key(keyspace: str, user_id: int) -> str:
    """A shopper's stored answers, one field per Idempotency-Key digest (a hash: a shopper's
    keys in a keyspace are bounded by how many fields the caller lets it hold)."""
    return f"{keyspace}:idem:{int(user_id)}"
