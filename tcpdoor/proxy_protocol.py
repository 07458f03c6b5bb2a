"""The PROXY protocol, version 2 (HAProxy's ``send-proxy-v2``): the header a TCP balancer
sends first on each connection to say whose connection it forwards.

The door reads it only from a trusted balancer (loopback or ``TRUSTED_PROXY_NETWORKS``), and
there only when the connection starts with its signature; the seed's frames never do (no
message type is 0x0D). A header from any other peer is not read: it is a framing error.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
HEADER_BYTES = 16
FIRST_BYTE = SIGNATURE[0]
_TCP4 = 0x11
_TCP6 = 0x21
_LOCAL = 0x0
_PROXY = 0x1
_MAX_ADDRESS_BLOCK = 4096


class ProxyHeaderError(ValueError):
    """The bytes start like a PROXY v2 header and are not one."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A parsed header: ``source`` is the client's address, None for a LOCAL command (the
    balancer's own connection, a health check) or an address family the door does not use."""

    source: str | None
    length: int  # bytes the header took, to be skipped before the frames


def proxy_header_parse(data: bytes | bytearray) -> ProxyHeader | None:
    """The header at the start of ``data``, or None while more bytes are needed. Raises
    ``ProxyHeaderError`` when they cannot be one."""
    start = bytes(data[: len(SIGNATURE)])
    if start != SIGNATURE[: len(start)]:
        raise ProxyHeaderError("not a PROXY protocol v2 header")
    if len(data) < HEADER_BYTES:
        return None
    version_command, family, length = data[12], data[13], struct.unpack("!H", data[14:16])[0]
    if version_command >> 4 != 2:
        raise ProxyHeaderError(f"PROXY protocol version {version_command >> 4}, not 2")
    if length > _MAX_ADDRESS_BLOCK:
        raise ProxyHeaderError(f"PROXY protocol address block of {length} bytes")
    total = HEADER_BYTES + length
    if len(data) < total:
        return None
    command = version_command & 0x0F
    block = bytes(data[HEADER_BYTES:total])
    if command == _LOCAL:
        return ProxyHeader(source=None, length=total)
    if command != _PROXY:
        raise ProxyHeaderError(f"PROXY protocol command {command}")
    if family == _TCP4 and length >= 12:
        return ProxyHeader(source=str(ipaddress.IPv4Address(block[:4])), length=total)
    if family == _TCP6 and length >= 36:
        return ProxyHeader(source=str(ipaddress.IPv6Address(block[:16])), length=total)
    return ProxyHeader(source=None, length=total)


def proxy_header_v2(source: str, source_port: int, destination: str, destination_port: int) -> bytes:
    """The header a balancer would send for a TCP connection from ``source`` (IPv4 or IPv6,
    both ends of one family): the tests' stand-in for HAProxy, and the client's."""
    src, dst = ipaddress.ip_address(source), ipaddress.ip_address(destination)
    family = _TCP4 if src.version == 4 else _TCP6
    block = src.packed + dst.packed + struct.pack("!HH", source_port, destination_port)
    return SIGNATURE + bytes([0x20 | _PROXY, family]) + struct.pack("!H", len(block)) + block
