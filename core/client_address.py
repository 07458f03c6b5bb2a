"""Who the client is, as far as the network can tell: the address per-IP limits count (the
sale's admission windows, the login and registration throttles)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    """The client's address for per-IP limits (``client_ip_of`` its ``META``)."""
    return client_ip_of(request.META)


def client_ip_of(meta: Mapping[str, Any]) -> str:
    """The client's address for per-IP limits, from a request's ``META`` (or the WSGI
    environ it is made of, before Django sees the request).

    ``REMOTE_ADDR`` unless ``ANTIBOT_CLIENT_IP_HEADER`` names a header set by a proxy this
    deployment trusts. For ``X-Forwarded-For`` the address is taken
    ``ANTIBOT_TRUSTED_PROXY_COUNT`` hops from the right, the last one a trusted proxy
    appended; entries further left are client-supplied and never believed.
    """
    remote = meta.get("REMOTE_ADDR", "") or ""
    header = settings.ANTIBOT_CLIENT_IP_HEADER
    if not header:
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
