"""Scan targets: parsed into validated values, never passed on as text.

A target is an IP address, a CIDR (expanded to its addresses), a host name, a
``host:port``, or an http(s) URL. Anything else is refused with the rule that refused
it: a target can never become a tool option or shell text.

IPv4 addresses are strict dotted quads. Every other spelling the C resolver would read
as an address (``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1``) is refused as
``ambiguous-ip-spelling`` instead of being handed to ``getaddrinfo`` as a "name": what
the scope checked and what the OS connects to must be the same address. IPv4-mapped IPv6
(``::ffff:10.0.0.1``) is read as the IPv4 address it maps.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from contracts.errors import PermanentError
from contracts.finding import normalise_ip

MAX_TARGET_LENGTH = 2048
MAX_CIDR_ADDRESSES = 1 << 20
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_FORBIDDEN = re.compile(r"[\s;&|`$<>(){}\[\]\\'\"*!?,%]")
#: Whitespace and control characters: refused anywhere in a URL (urlsplit would drop
#: some of them silently, so they are refused before it runs).
_URL_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f]")
#: A last label the WHATWG URL parser (and so browsers and many libraries) reads as a number.
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$")


class TargetRefused(PermanentError):
    """A target was refused; ``rule`` names the rule that refused it."""

    def __init__(self, value: str, rule: str, detail: str) -> None:
        super().__init__(f"target {value[:200]!r} refused by rule {rule}: {detail}")
        self.value = value
        self.rule = rule
        self.detail = detail


@dataclass(frozen=True)
class ParsedTarget:
    """One concrete target: an address or name, an optional port, an optional URL."""

    host: str | None
    ip: str | None
    port: int | None = None
    url: str | None = None
    #: The CIDR this address was expanded from, so the scope can judge the CIDR whole.
    network: str | None = field(default=None, compare=False)

    @property
    def address(self) -> str:
        return self.ip or self.host or ""

    @property
    def kind(self) -> str:
        return "url" if self.url else "host"

    def text(self) -> str:
        """The canonical text a task carries; parsing it again gives the same target."""
        if self.url:
            return self.url
        if self.port is None:
            return self.address
        address = f"[{self.address}]" if self.ip and ":" in self.ip else self.address
        return f"{address}:{self.port}"


def _host_name(value: str, original: str) -> str:
    host = value.rstrip(".").lower()
    if len(host) > 253:
        raise TargetRefused(original, "name-too-long", "host names are at most 253 characters")
    labels = host.split(".")
    if not all(_LABEL.match(label) for label in labels):
        raise TargetRefused(
            original, "invalid-host-name", "labels are letters, digits and inner hyphens"
        )
    read_as = _inet_aton(host)
    if read_as is not None or _NUMERIC_LABEL.match(labels[-1]):
        meaning = f" (the resolver would read it as {read_as})" if read_as else ""
        raise TargetRefused(
            original,
            "ambiguous-ip-spelling",
            f"{host} is a numeric name, not a dotted-quad IP{meaning}",
        )
    return host


def _inet_aton(host: str) -> str | None:
    """The IPv4 address the C library reads ``host`` as (decimal, octal, hex, short)."""
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def _ip(value: str, original: str) -> str:
    try:
        ip = normalise_ip(value)
    except ValueError as exc:
        raise TargetRefused(original, "invalid-address", str(exc)) from exc
    _refuse_unspecified(ip, original)
    return ip


def _refuse_unspecified(ip: str, original: str) -> None:
    # Connecting to 0.0.0.0 or :: reaches this host's own services.
    if ipaddress.ip_address(ip).is_unspecified:
        raise TargetRefused(original, "unspecified-address", f"{ip} is not a host to scan")


def _address(value: str, original: str) -> tuple[str | None, str | None]:
    """(host, ip) for a bare address or name."""
    try:
        ip = normalise_ip(value)
    except ValueError:
        return _host_name(value, original), None
    _refuse_unspecified(ip, original)
    return None, ip


def _port(text: str, original: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise TargetRefused(original, "invalid-port", "ports are 1-65535")
    return int(text)


def parse_target(value: str) -> Iterator[ParsedTarget]:
    """Every concrete target that ``value`` stands for (a CIDR stands for many)."""
    original = value
    text = value.strip()
    if not text:
        raise TargetRefused(original, "empty", "empty target")
    if len(text) > MAX_TARGET_LENGTH:
        raise TargetRefused(original, "too-long", f"targets are at most {MAX_TARGET_LENGTH} chars")
    if text.startswith("-"):
        raise TargetRefused(original, "option-like", "targets never start with '-'")
    if "://" in text:
        yield _parse_url(text, original)
        return
    if _FORBIDDEN.search(text.replace("[", "").replace("]", "")):
        raise TargetRefused(original, "forbidden-character", "shell or list characters")
    if "/" in text:
        yield from _expand_cidr(text, original)
        return
    if text.startswith("["):  # [v6] or [v6]:port
        address, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise TargetRefused(original, "invalid-address", "use [IPv6] or [IPv6]:port")
        yield ParsedTarget(
            None, _ip(address, original), _port(rest[1:], original) if rest else None
        )
        return
    if text.count(":") == 1:
        name, _, port = text.partition(":")
        host, ip = _address(name, original)
        yield ParsedTarget(host, ip, _port(port, original))
        return
    host, ip = _address(text, original)
    yield ParsedTarget(host, ip)


def _parse_url(text: str, original: str) -> ParsedTarget:
    if _URL_FORBIDDEN.search(text):
        raise TargetRefused(original, "forbidden-character", "whitespace or control characters")
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https"):
        raise TargetRefused(original, "url-scheme", "only http and https URLs are targets")
    if parts.username or parts.password:
        raise TargetRefused(original, "url-credentials", "URLs with credentials are refused")
    if not parts.hostname:
        raise TargetRefused(original, "url-host", "the URL has no host")
    try:
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(original, "invalid-port", "ports are 1-65535") from exc
    if _FORBIDDEN.search(parts.hostname):
        raise TargetRefused(original, "forbidden-character", "shell or list characters")
    host, ip = _address(parts.hostname, original)
    scheme = parts.scheme.lower()
    netloc = f"[{ip}]" if ip and ":" in ip else (ip or host or "")
    if port is not None:
        netloc = f"{netloc}:{port}"
    path = parts.path or "/"
    query = f"?{parts.query}" if parts.query else ""
    return ParsedTarget(
        host, ip, port or (443 if scheme == "https" else 80), f"{scheme}://{netloc}{path}{query}"
    )


def _expand_cidr(text: str, original: str) -> Iterator[ParsedTarget]:
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise TargetRefused(original, "invalid-cidr", str(exc)) from exc
    if network.num_addresses > MAX_CIDR_ADDRESSES:
        raise TargetRefused(
            original, "cidr-too-large", f"at most {MAX_CIDR_ADDRESSES} addresses per CIDR"
        )
    network = ipv4_mapped_network(network)
    name = str(network)
    if network.num_addresses > 2:
        for address in network.hosts():
            yield ParsedTarget(None, str(address), network=name)
        return
    for address in network:
        _refuse_unspecified(str(address), original)
        yield ParsedTarget(None, str(address), network=name)


def ipv4_mapped_network(
    network: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """``::ffff:10.0.0.0/120`` is ``10.0.0.0/24``; any other network is itself."""
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        first = network.network_address.ipv4_mapped
        assert first is not None
        return ipaddress.IPv4Network((first, network.prefixlen - 96))
    return network


_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
