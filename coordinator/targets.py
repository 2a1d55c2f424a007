"""Scan targets: parsed into validated values, never passed on as text.

A target is an IP address, a CIDR (expanded to its addresses), a host name, a
``host:port``, or an http(s) URL. Anything else is refused with the rule that refused
it: a target can never become a tool option or shell text.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from contracts.errors import PermanentError
from contracts.finding import normalise_ip

MAX_TARGET_LENGTH = 2048
MAX_CIDR_ADDRESSES = 1 << 20
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_FORBIDDEN = re.compile(r"[\s;&|`$<>(){}\[\]\\'\"*!?,]")


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
    if labels[-1].isdigit():
        raise TargetRefused(
            original, "ambiguous-ip-spelling", "all-numeric names are not dotted-quad IPs"
        )
    return host


def _address(value: str, original: str) -> tuple[str | None, str | None]:
    """(host, ip) for a bare address or name."""
    try:
        return None, normalise_ip(value)
    except ValueError:
        pass
    return _host_name(value, original), None


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
    if text.startswith("["):  # [v6]:port
        address, _, port = text[1:].partition("]:")
        yield ParsedTarget(None, normalise_ip(address.rstrip("]")), _port(port, original))
        return
    if text.count(":") == 1:
        name, _, port = text.partition(":")
        host, ip = _address(name, original)
        yield ParsedTarget(host, ip, _port(port, original))
        return
    host, ip = _address(text, original)
    yield ParsedTarget(host, ip)


def _parse_url(text: str, original: str) -> ParsedTarget:
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
    hosts = network.hosts() if network.num_addresses > 2 else iter(network)
    for address in hosts:
        yield ParsedTarget(None, str(address))
