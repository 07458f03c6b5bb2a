"""Where a webhook may be sent, and sending it there.

Server-side request forgery guard: a URL's host is resolved when the endpoint is registered
and again before every attempt (DNS can change), and every address it resolves to must be a
public one; loopback, link-local, private and the other non-global ranges are refused unless
the caller allows them. The request then goes to the address that was checked, never to a
second resolution of the name, so a rebinding DNS answer cannot slip in between the check
and the connection. Redirects are not followed.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from core.errors import InvalidRequest

RESPONSE_BYTES_READ = 4096
"""Of a receiver's answer only the start is read (kept in the delivery's last error)."""


class DestinationRefused(InvalidRequest):
    default_detail = "This webhook URL is refused."


@dataclass(frozen=True, slots=True)
class Destination:
    scheme: str
    host: str
    port: int
    target: str
    """The path and query sent in the request line."""
    addresses: tuple[str, ...]

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


def address_is_public(address: str) -> bool:
    """A globally routable unicast address. An IPv4 address written as IPv6 (``::ffff:a.b.c.d``)
    is judged as the IPv4 address it is."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def url_parts(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, target) of an http(s) URL; ``DestinationRefused`` otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise DestinationRefused(f"{url!r} is not a URL.") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise DestinationRefused("A webhook URL starts with http:// or https://.")
    if not parts.hostname:
        raise DestinationRefused("A webhook URL names a host.")
    if parts.username is not None or parts.password is not None:
        raise DestinationRefused("A webhook URL carries no user name or password; the signature authenticates.")
    target = parts.path or "/"
    if parts.query:
        target += f"?{parts.query}"
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80), target


def destination_resolve(url: str, *, allow_private: bool) -> Destination:
    """Resolve the URL's host now and check every address. Raises ``DestinationRefused``
    for a malformed URL, a name that does not resolve, or (unless ``allow_private``) any
    address that is not public."""
    scheme, host, port, target = url_parts(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as error:
        raise DestinationRefused(f"{host} does not resolve ({error}).") from None
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise DestinationRefused(f"{host} resolves to no address.")
    if not allow_private:
        inside = [address for address in addresses if not address_is_public(address)]
        if inside:
            raise DestinationRefused(
                f"{host} resolves to {', '.join(inside)}: a loopback, link-local or private address "
                "(server-side request forgery guard). Allow it in settings (WEBHOOKS_ALLOW_PRIVATE, or "
                "WEBHOOKS_ALLOW_PRIVATE_OPT_IN with the endpoint's allow-private flag)."
            )
    return Destination(scheme=scheme, host=host, port=port, target=target, addresses=addresses)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """TLS to a checked address, the certificate verified against the URL's host name."""

    def __init__(self, address: str, port: int, *, server_hostname: str, timeout: float) -> None:
        super().__init__(address, port, timeout=timeout, context=ssl.create_default_context())
        self._server_hostname = server_hostname

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self._server_hostname)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Answer:
    status_code: int
    retry_after: str | None
    excerpt: str


def destination_post(destination: Destination, *, body: bytes, headers: Mapping[str, str], timeout: float) -> Answer:
    """POST ``body`` to the first checked address that takes the connection. ``timeout``
    bounds the connection and each read. Raises ``OSError`` (refused, unreachable, timed
    out, TLS) or ``http.client.HTTPException`` (a broken answer)."""
    last_error: OSError | None = None
    for address in destination.addresses:
        connection: http.client.HTTPConnection
        if destination.scheme == "https":
            connection = _PinnedHTTPSConnection(
                address, destination.port, server_hostname=destination.host, timeout=timeout
            )
        else:
            connection = http.client.HTTPConnection(address, destination.port, timeout=timeout)
        try:
            try:
                connection.connect()
            except ssl.SSLError:
                raise
            except OSError as error:
                last_error = error
                continue
            connection.request(
                "POST", destination.target, body=body, headers={"Host": destination.host_header, **headers}
            )
            response = connection.getresponse()
            excerpt = response.read(RESPONSE_BYTES_READ).decode("utf-8", "replace")
            return Answer(status_code=response.status, retry_after=response.getheader("Retry-After"), excerpt=excerpt)
        finally:
            connection.close()
    raise last_error or OSError(f"no address of {destination.host} took the connection")
