"""Reads of the anti-bot app: who the client is, as far as the network can tell
(``core.client_address``: the accounts' throttles need the same answer)."""

from core.client_address import client_ip

__all__ = ["client_ip"]
