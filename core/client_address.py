"""Who the client is, as far as the network can tell: the address per-IP limits count (the
sale's admission windows, the login and registration throttles), and which peers may tell.

Only a balancer of this deployment says who a request is for: a peer on loopback or inside
``TRUSTED_PROXY_NETWORKS``. What any other peer sends as ``X-Forwarded-For``,
``X-Forwarded-Proto``, ``X-Request-ID`` or ``ANTIBOT_CLIENT_IP_HEADER`` is dropped before
Django sees it (``EdgeHeaders``), so a shopper who talks to a process directly cannot pose
as another address, as HTTPS, or as another request's id.
"""

from __future__ import annotations

import functools
import ipaddress
import random
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from .logs import REQUEST_ID

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
StartResponse = Callable[..., Any]
WSGIApplication = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

# An id from the balancer is logged and echoed: kept to a plain token of bounded length.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def networks_parse(cidrs: Iterable[str], *, setting: str) -> tuple[IPNetwork, ...]:
    """CIDRs (``10.0.0.0/8``, ``fd00::/8``, a bare address) parsed. Raises ValueError naming
    ``setting`` and the bad entry."""
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError as error:
            raise ValueError(f"{setting}: {error}") from None
    return tuple(networks)


def address_in(address: str, networks: tuple[IPNetwork, ...], *, loopback: bool = True) -> bool:
    """Inside one of ``networks``, or loopback unless ``loopback`` is false (an IPv4 address
    mapped into IPv6 counts as IPv4)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (loopback and ip.is_loopback) or any(ip in network for network in networks)


@functools.lru_cache(maxsize=8192)
def _proxy_trusted(address: str, cidrs: tuple[str, ...]) -> bool:
    return address_in(address, networks_parse(cidrs, setting="TRUSTED_PROXY_NETWORKS"))


def proxy_trusted(address: str) -> bool:
    """``address`` is a balancer of this deployment (loopback or ``TRUSTED_PROXY_NETWORKS``).
    Cached per address: the hot path asks on every request."""
    return _proxy_trusted(address, tuple(settings.TRUSTED_PROXY_NETWORKS))


def client_ip(request: HttpRequest) -> str:
    """The client's address for per-IP limits (``client_ip_of`` its ``META``)."""
    return client_ip_of(request.META)


def client_ip_of(meta: Mapping[str, Any]) -> str:
    """The client's address for per-IP limits, from a request's ``META`` (or the WSGI
    environ it is made of, before Django sees the request).

    ``REMOTE_ADDR`` unless the peer is a trusted balancer and ``ANTIBOT_CLIENT_IP_HEADER``
    names a header it sets. For ``X-Forwarded-For`` the address is taken
    ``ANTIBOT_TRUSTED_PROXY_COUNT`` hops from the right, the last one a trusted proxy
    appended; entries further left are client-supplied and never believed.
    """
    remote = meta.get("REMOTE_ADDR", "") or ""
    header = settings.ANTIBOT_CLIENT_IP_HEADER
    if not header or not proxy_trusted(remote):
        return remote
    raw = meta.get("HTTP_" + header.upper().replace("-", "_"), "")
    if not raw:
        return remote
    if header.lower() == "x-forwarded-for":
        hops = [hop.strip() for hop in raw.split(",") if hop.strip()]
        depth = settings.ANTIBOT_TRUSTED_PROXY_COUNT
        if depth < 1 or len(hops) < depth:
            return remote
        candidate = hops[-depth]
    else:
        candidate = raw.strip()
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote


def request_id_new() -> str:
    """16 hex digits, as ``os.urandom(8).hex()`` gave, from the process's Mersenne Twister
    (reseeded in a forked child): an id to tell requests apart, not a secret, and no system
    call that releases the GIL on every request (docs/purchase-path.md, "What a 'no' costs")."""
    return f"{random.getrandbits(64):016x}"


class EdgeHeaders:
    """WSGI middleware, outermost: the balancer's headers believed from the balancer only,
    and a request id on every answer, the hot path's included (``core.hot_path`` sits inside).

    From an untrusted peer the forwarding headers are removed. The request id is the
    balancer's ``X-Request-ID`` when a trusted peer sent a well-formed one, else a new one; it
    is set on the environ (Django's views read it as ``request.META["HTTP_X_REQUEST_ID"]``),
    on the thread's log context (``core.logs.REQUEST_ID``) and on the answer's headers.
    """

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app
        header = settings.ANTIBOT_CLIENT_IP_HEADER
        self.forwarding = ["HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_REQUEST_ID"]
        if header:
            self.forwarding.append("HTTP_" + header.upper().replace("-", "_"))

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if not proxy_trusted(environ.get("REMOTE_ADDR", "")):
            for name in self.forwarding:
                environ.pop(name, None)
        given = environ.get("HTTP_X_REQUEST_ID")
        request_id = given if given and _REQUEST_ID.fullmatch(given) else request_id_new()
        environ["HTTP_X_REQUEST_ID"] = request_id
        REQUEST_ID.set(request_id)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers.append(("X-Request-ID", request_id))
            if exc_info is None:  # Passed on as the application called it.
                return start_response(status, headers)
            return start_response(status, headers, exc_info)

        return self.app(environ, start)
