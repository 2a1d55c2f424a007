"""The asset of a web finding: a URL on a host, at the address the request went to."""

from __future__ import annotations

from urllib.parse import urlsplit

from contracts.enums import Transport
from contracts.finding import Asset, normalise_ip
from workers.tools.address import is_ip
from workers.tools.base import Target, ToolError

_DEFAULT_PORTS = {"http": 80, "https": 443}


def web_asset(url: str, ip: str | None, target: Target, *, tool: str, field: str) -> Asset:
    """The asset ``url`` names; ``ip`` is the address requested (else the target's).

    ``tool`` and ``field`` (where the URL was read) name the culprit of a bad output.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".").lower()
    if scheme not in _DEFAULT_PORTS or not host:
        raise ToolError(f"{tool} output has an unusable {field} {url!r}")
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
        address = ip or target.ip or (host if is_ip(host) else None)
        return Asset(
            host=None if is_ip(host) else host,
            ip=None if address is None else normalise_ip(address),
            transport=Transport.TCP,
            port=port,
            url=url,
        )
    except ValueError as exc:
        raise ToolError(f"{tool} output has an invalid address: {exc}") from exc
