"""The scope: which addresses and names a scan may touch, and which it never may.

Allow entries are CIDRs (``127.0.0.0/8``), host names (``app.example.test``) and
wildcard domains (``*.example.test``). An entry prefixed with ``!`` is a deny entry of
the same three kinds (``!127.0.0.53``, ``!db.example.test``, ``!*.prod.example.test``);
deny entries win over allow entries, and a deny wildcard covers its domain too.

A target is refused by the first rule that applies, and the refusal names it:

* ``denied``: the address, name or CIDR matches a deny entry (the entry is named);
* ``out-of-scope``: the address or name is not allowed, or a CIDR is not wholly inside
  the allowlist;
* ``resolves-denied``: a name resolves to an address in a deny CIDR (checked even for
  names allowed by name, whenever the scope has deny CIDRs);
* ``resolves-out-of-scope``: a name not allowed by name resolves to an address outside
  the allowed CIDRs;
* ``unresolvable``: a name that has to be resolved does not resolve.

The embedded default scope is loopback only.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

from contracts.errors import ConfigError
from coordinator.targets import ParsedTarget, TargetRefused, ipv4_mapped_network, parse_target

LOOPBACK_SCOPE = ("127.0.0.0/8", "::1/128", "localhost")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Scope:
    networks: tuple[Network, ...] = ()
    names: frozenset[str] = field(default_factory=frozenset)
    wildcards: tuple[str, ...] = ()
    denied_networks: tuple[Network, ...] = ()
    denied_names: frozenset[str] = field(default_factory=frozenset)
    denied_wildcards: tuple[str, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Scope:
        """A scope from CLI/env entries; a malformed entry is a :class:`ConfigError`."""
        allow: tuple[list[Network], set[str], list[str]] = ([], set(), [])
        deny: tuple[list[Network], set[str], list[str]] = ([], set(), [])
        for raw in entries:
            entry = raw.strip()
            networks, names, wildcards = allow
            if entry.startswith("!"):
                networks, names, wildcards = deny
                entry = entry[1:].strip()
                if not entry:
                    raise ConfigError(f"scope entry {raw!r}: '!' needs an entry to deny")
            entry = entry.lower().rstrip(".")
            if not entry:
                continue
            if entry.startswith("*."):
                wildcards.append("." + _entry_name(entry[2:], raw))
                continue
            try:
                networks.append(ipv4_mapped_network(ipaddress.ip_network(entry, strict=False)))
            except ValueError:
                names.add(_entry_name(entry, raw))
        return cls(
            tuple(allow[0]),
            frozenset(allow[1]),
            tuple(allow[2]),
            tuple(deny[0]),
            frozenset(deny[1]),
            tuple(deny[2]),
        )

    def describe(self) -> str:
        """The scope as text, deny entries last (it feeds the scan's configuration hash)."""
        parts = [str(n) for n in self.networks] + sorted(self.names)
        parts += [f"*{w}" for w in self.wildcards]
        parts += [f"!{n}" for n in self.denied_networks]
        parts += [f"!{n}" for n in sorted(self.denied_names)]
        parts += [f"!*{w}" for w in self.denied_wildcards]
        return ", ".join(parts) or "(empty)"

    # -- matching ----------------------------------------------------------------------

    def _ip_allowed(self, ip: str) -> bool:
        address = _address(ip)
        return any(address in network for network in self.networks)

    def _ip_denied(self, ip: str) -> Network | None:
        address = _address(ip)
        return next((n for n in self.denied_networks if address in n), None)

    def _name_allowed(self, host: str) -> bool:
        return host in self.names or any(host.endswith(w) for w in self.wildcards)

    def _name_denied(self, host: str) -> str | None:
        if host in self.denied_names:
            return host
        for wildcard in self.denied_wildcards:
            if host.endswith(wildcard) or host == wildcard[1:]:
                return f"*{wildcard}"
        return None

    # -- checking ----------------------------------------------------------------------

    def check(self, target: ParsedTarget, *, resolve: bool = True) -> list[str]:
        """Raise :class:`TargetRefused` (naming the rule) unless ``target`` is in scope.

        Returns the addresses that were checked (an IP, a name's resolved addresses, or
        [] for a name allowed by name that did not need resolving), so the caller
        connects to exactly those.
        """
        original = target.text()
        if target.ip is not None:
            if target.network is not None:
                _check_network(self, target.network)
            denied = self._ip_denied(target.ip)
            if denied is not None:
                raise TargetRefused(original, "denied", f"{target.ip} matches deny entry !{denied}")
            if not self._ip_allowed(target.ip):
                raise TargetRefused(
                    original, "out-of-scope", f"{target.ip} is not in {self.describe()}"
                )
            return [target.ip]
        host = target.host or ""
        denied_name = self._name_denied(host)
        if denied_name is not None:
            raise TargetRefused(original, "denied", f"{host} matches deny entry !{denied_name}")
        allowed_by_name = self._name_allowed(host)
        if allowed_by_name and not (resolve and self.denied_networks):
            return []
        if not resolve:
            raise TargetRefused(original, "out-of-scope", f"{host} is not in {self.describe()}")
        addresses = resolve_addresses(host, original)
        denied_by = {a: n for a in addresses if (n := self._ip_denied(a)) is not None}
        if denied_by:
            listed = ", ".join(f"{a} (!{n})" for a, n in denied_by.items())
            raise TargetRefused(original, "resolves-denied", f"{host} resolves to {listed}")
        if not allowed_by_name:
            outside = [a for a in addresses if not self._ip_allowed(a)]
            if outside:
                raise TargetRefused(
                    original,
                    "resolves-out-of-scope",
                    f"{host} resolves to {', '.join(outside)}, not in {self.describe()}",
                )
        return addresses


def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@functools.lru_cache(maxsize=64)
def _check_network(scope: Scope, cidr: str) -> None:
    """A CIDR is judged whole, before any of its addresses is dispatched.

    Cached: every address of the CIDR asks again, and the answer does not change.
    """
    network = ipaddress.ip_network(cidr)
    for denied in scope.denied_networks:
        if network.version == denied.version and network.overlaps(denied):
            raise TargetRefused(
                cidr, "denied", f"{cidr} overlaps deny entry !{denied}; split the CIDR around it"
            )
    if not _covered(network, scope.networks):
        raise TargetRefused(cidr, "out-of-scope", f"{cidr} is not wholly in {scope.describe()}")


def _covered(network: Network, allowed: tuple[Network, ...]) -> bool:
    """Whether the allowed networks together (adjacent ones merged) contain ``network``."""
    if isinstance(network, ipaddress.IPv4Network):
        v4 = [n for n in allowed if isinstance(n, ipaddress.IPv4Network)]
        return any(network.subnet_of(n) for n in ipaddress.collapse_addresses(v4))
    v6 = [n for n in allowed if isinstance(n, ipaddress.IPv6Network)]
    return any(network.subnet_of(n) for n in ipaddress.collapse_addresses(v6))


def _entry_name(name: str, raw: str) -> str:
    """A scope entry's host name, validated like a target's (so ``!10.1`` is an error)."""
    try:
        (target,) = parse_target(name)
    except (TargetRefused, ValueError) as exc:
        raise ConfigError(
            f"scope entry {raw!r} is not a CIDR, host name or *.domain: {exc}"
        ) from exc
    if target.host is None or target.port is not None or target.url is not None:
        raise ConfigError(f"scope entry {raw!r} is not a CIDR, host name or *.domain")
    return target.host


def resolve_addresses(host: str, original: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(original, "unresolvable", f"{host} does not resolve: {exc}") from exc
    addresses = sorted({str(info[4][0]) for info in infos})
    if not addresses:
        raise TargetRefused(original, "unresolvable", f"{host} resolves to no address")
    return addresses
