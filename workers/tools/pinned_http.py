"""HTTP(S) requests of built-in checks to the address the worker pinned.

A URL target is checked (http or https, no credentials, a valid host and port) and every
connection goes to the address the worker resolved and checked (``target.ip``), never to a
fresh DNS answer, while the ``Host`` header and TLS SNI carry the URL's host name. HTTPS
certificates are not verified here (that is tls-cert's job). Redirects may be followed only
while :func:`same_host` holds.
"""

from __future__ import annotations

import http.client
import ssl
from urllib.parse import SplitResult, urlsplit

from workers.tools.address import checked_address, checked_host_name, is_ip
from workers.tools.base import Target, ToolError

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


def checked_url(target: Target, tool: str) -> SplitResult:
    """The target's URL, refused unless it is a plain http(s) URL with a valid host and port."""
    if not target.url:
        raise ToolError(f"{tool} needs a URL target")
    url = urlsplit(target.url.strip())
    if url.scheme not in ("http", "https"):
        raise ToolError(f"refused target URL {target.url!r}: only http and https are scanned")
    if url.username is not None or url.password is not None:
        raise ToolError("refused target URL: it carries credentials")
    try:
        url.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError as exc:
        raise ToolError(f"refused target URL {target.url!r}: {exc}") from exc
    url_host(url)
    return url


def connect_address(target: Target, url: SplitResult) -> str:
    """Where connections go: the pinned ``target.ip`` if set, else the URL's host."""
    return checked_address(target) if target.ip else url_host(url)


def url_host(url: SplitResult) -> str:
    """The URL's host, lower-cased, refused unless it is an IP address or a valid name."""
    host = (url.hostname or "").rstrip(".").lower()
    if not host:
        raise ToolError(f"refused URL {url.geturl()!r}: it has no host")
    return host if is_ip(host) else checked_host_name(host)


def same_host(candidate: SplitResult, target: SplitResult) -> bool:
    """Whether a redirect stays on the target's host (any port, http or https)."""
    if candidate.scheme not in ("http", "https"):
        return False
    try:
        candidate.port  # noqa: B018 (raises ValueError for a bad port)
        return url_host(candidate) == url_host(target)
    except (ValueError, ToolError):
        return False


def url_port(url: SplitResult) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


def host_header(url: SplitResult) -> str:
    """The ``Host`` header of a request for ``url`` (brackets around IPv6, explicit port)."""
    host = url_host(url)
    header = f"[{host}]" if ":" in host else host
    return header if url.port is None else f"{header}:{url.port}"


def request_path(url: SplitResult) -> str:
    """The request target: path and query."""
    path = url.path or "/"
    return f"{path}?{url.query}" if url.query else path


def connection(url: SplitResult, connect_to: str, timeout: float) -> http.client.HTTPConnection:
    """A new (not yet connected) connection to ``connect_to`` for requests to ``url``."""
    port = url_port(url)
    if url.scheme == "https":
        host = url_host(url)
        return _TLSConnection(connect_to, port, sni=None if is_ip(host) else host, timeout=timeout)
    return http.client.HTTPConnection(connect_to, port, timeout=timeout)


#: What a failed request raises: socket errors, protocol errors, TLS errors.
REQUEST_ERRORS = (OSError, http.client.HTTPException, ssl.SSLError)


class _TLSConnection(http.client.HTTPConnection):
    """HTTPS to a pinned address, SNI set to the URL's host name, certificate not checked."""

    default_port = 443

    def __init__(self, address: str, port: int, *, sni: str | None, timeout: float) -> None:
        super().__init__(address, port, timeout=timeout)
        self._sni = sni

    def connect(self) -> None:
        super().connect()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # tls-cert judges the certificate
        self.sock = context.wrap_socket(self.sock, server_hostname=self._sni)
