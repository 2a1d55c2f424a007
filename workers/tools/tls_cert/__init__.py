"""tls-cert: a built-in check of the certificate a TLS server presents.

Target: a host (``target.port``, default 443) or an https URL. Two handshakes, paced to
``ctx.rps`` and bounded by ``ctx.time_limit_s`` together: the first accepts anything, to
read the leaf certificate (DER); the second verifies against the system trust store, and
the host name when one is known (it is also sent as SNI both times), so the parser can
tell an untrusted chain or a name mismatch apart.

Options: ``expiry_warning_days`` (default 30): how close to its expiry a certificate is
reported as expiring soon.
"""

from __future__ import annotations

import base64
import socket
import ssl
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import ClassVar
from urllib.parse import urlsplit

from contracts.finding import Finding
from workers.tools.address import checked_address, checked_host_name, is_ip, server_name
from workers.tools.base import RunContext, Target, ToolError
from workers.tools.builtin import BuiltinCheck
from workers.tools.pacing import Pacer
from workers.tools.tls_cert import parser
from workers.tools.tls_cert.parser import CertificateFetch, Verification

DEFAULT_PORT = 443
_HANDSHAKE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class _Endpoint:
    connect_to: str
    port: int
    #: Host name for SNI and the name check; None for an IP-only target.
    name: str | None


class TlsCertTool(BuiltinCheck):
    name: ClassVar[str] = "tls-cert"
    pool: ClassVar[str] = "web"
    target_kind: ClassVar[str] = "host"

    @classmethod
    def accepts(cls, *, url: str | None, port: int | None) -> bool:
        """An https URL, or a host with a port: where TLS is spoken."""
        return (url or "").startswith("https://") or (url is None and port is not None)

    default_time_limit_s: ClassVar[int] = 60

    def collect(self, ctx: RunContext) -> bytes:
        endpoint = _endpoint(ctx.target)
        warning_days = _warning_days(ctx.options)
        pacer = Pacer(ctx.rps)
        deadline = time.monotonic() + ctx.time_limit_s
        pacer.wait()
        observed_at = datetime.now(UTC)
        der, peer_ip, protocol, cipher = _read_certificate(endpoint, _timeout(deadline))
        pacer.wait()
        # Verify the very server that was read, not whatever a fresh DNS answer names.
        verification = _verify(replace(endpoint, connect_to=peer_ip), _timeout(deadline))
        fetch = CertificateFetch(
            ip=peer_ip,
            port=endpoint.port,
            server_name=endpoint.name,
            observed_at=observed_at,
            expiry_warning_days=warning_days,
            protocol=protocol,
            cipher=cipher,
            certificate_der=base64.b64encode(der).decode(),
            verification=verification,
        )
        return fetch.model_dump_json().encode()

    def parse(self, raw: bytes, ctx: RunContext) -> list[Finding]:
        override = None
        if "expiry_warning_days" in ctx.options:
            override = _warning_days(ctx.options)
        return parser.parse(raw, ctx.target, expiry_warning_days=override)


def _warning_days(options: dict[str, object]) -> int:
    days = options.get("expiry_warning_days", parser.DEFAULT_EXPIRY_WARNING_DAYS)
    if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= 3650:
        raise ToolError(f"invalid expiry_warning_days {days!r}: give whole days from 0 to 3650")
    return days


def _endpoint(target: Target) -> _Endpoint:
    if target.url:
        url = urlsplit(target.url.strip())
        if url.scheme != "https":
            raise ToolError(f"refused target URL {target.url!r}: tls-cert checks https URLs")
        host = (url.hostname or "").rstrip(".").lower()
        if not host:
            raise ToolError(f"refused target URL {target.url!r}: it has no host")
        try:
            port = url.port or DEFAULT_PORT
        except ValueError as exc:
            raise ToolError(f"refused target URL {target.url!r}: {exc}") from exc
        name = None if is_ip(host) else checked_host_name(host)
        connect_to = checked_address(target) if target.ip else host
        return _Endpoint(connect_to=connect_to, port=port, name=name)
    port = target.port or DEFAULT_PORT
    if not 1 <= port <= 65535:
        raise ToolError(f"refused target port {port}")
    return _Endpoint(connect_to=checked_address(target), port=port, name=server_name(target))


def _timeout(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise ToolError("tls-cert ran out of time")
    return min(_HANDSHAKE_TIMEOUT_S, remaining)


def _read_certificate(endpoint: _Endpoint, timeout: float) -> tuple[bytes, str, str, str]:
    """The leaf certificate (DER), the peer's IP, protocol and cipher; nothing verified."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # read now, judged by the parser
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.set_ciphers("ALL:@SECLEVEL=0")  # see weak configurations instead of failing
    where = f"{endpoint.connect_to}:{endpoint.port}"
    try:
        with (
            socket.create_connection((endpoint.connect_to, endpoint.port), timeout) as sock,
            context.wrap_socket(sock, server_hostname=endpoint.name) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
            peer_ip = str(tls.getpeername()[0])
            protocol = tls.version() or "unknown"
            cipher = (tls.cipher() or ("unknown",))[0]
    except (OSError, ssl.SSLError) as exc:
        raise ToolError(f"tls-cert could not complete a TLS handshake with {where}: {exc}") from exc
    if not der:
        raise ToolError(f"tls-cert: {where} presented no certificate")
    return der, peer_ip, protocol, cipher


def _verify(endpoint: _Endpoint, timeout: float) -> Verification:
    """A handshake that verifies the chain against the system trust store, and the name."""
    context = ssl.create_default_context()
    context.check_hostname = endpoint.name is not None
    # Only trust and name are judged here: the parser judges key size and expiry, and
    # OpenSSL would report a weak key or an old protocol before an untrusted chain.
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.set_ciphers("ALL:@SECLEVEL=0")
    try:
        with (
            socket.create_connection((endpoint.connect_to, endpoint.port), timeout) as sock,
            context.wrap_socket(sock, server_hostname=endpoint.name),
        ):
            return Verification(ok=True)
    except ssl.SSLCertVerificationError as exc:
        return Verification(ok=False, code=exc.verify_code, message=exc.verify_message)
    except (OSError, ssl.SSLError) as exc:
        # Not a verdict on the certificate (e.g. no common protocol with a strict client).
        return Verification(ok=False, message=str(exc))
