"""The scope allowlist: which addresses and names a scan may touch.

Entries are CIDRs (``127.0.0.0/8``), host names (``app.example.test``) and wildcard
domains (``*.example.test``). A name is in scope only if the name itself is allowed
(or it is allowed by address) and every address it resolves to is in an allowed CIDR
when it is not allowed by name; an IP is in scope when a CIDR contains it. The
embedded default scope is loopback only.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

from coordinator.targets import ParsedTarget, TargetRefused

LOOPBACK_SCOPE = ("127.0.0.0/8", "::1/128", "localhost")


@dataclass(frozen=True)
class Scope:
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    names: frozenset[str] = field(default_factory=frozenset)
    wildcards: tuple[str, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Scope:
        networks = []
        names = set()
        wildcards = []
        for raw in entries:
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            if entry.startswith("*."):
                wildcards.append(entry[1:])  # ".example.test"
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                names.add(entry)
        return cls(tuple(networks), frozenset(names), tuple(wildcards))

    def describe(self) -> str:
        parts = [str(n) for n in self.networks] + sorted(self.names)
        parts += [f"*{w}" for w in self.wildcards]
        return ", ".join(parts) or "(empty)"

    def _ip_allowed(self, ip: str) -> bool:
        address = ipaddress.ip_address(ip)
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def _name_allowed(self, host: str) -> bool:
        return host in self.names or any(host.endswith(w) for w in self.wildcards)

    def check(self, target: ParsedTarget, *, resolve: bool = True) -> list[str]:
        """Raise :class:`TargetRefused` (naming the rule) unless ``target`` is in scope.

        Returns the addresses that were checked (a name's resolved addresses, or [] when
        the name itself is allowed), so the caller connects to exactly those.
        """
        original = target.text()
        if target.ip is not None:
            if not self._ip_allowed(target.ip):
                raise TargetRefused(
                    original, "out-of-scope", f"{target.ip} is not in {self.describe()}"
                )
            return [target.ip]
        host = target.host or ""
        if self._name_allowed(host):
            return []
        if not resolve:
            raise TargetRefused(original, "out-of-scope", f"{host} is not in {self.describe()}")
        addresses = resolve_addresses(host, original)
        outside = [a for a in addresses if not self._ip_allowed(a)]
        if outside:
            raise TargetRefused(
                original,
                "resolves-out-of-scope",
                f"{host} resolves to {', '.join(outside)}, not in {self.describe()}",
            )
        return addresses


def resolve_addresses(host: str, original: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise TargetRefused(original, "unresolvable", f"{host} does not resolve: {exc}") from exc
    return sorted({str(info[4][0]) for info in infos})
