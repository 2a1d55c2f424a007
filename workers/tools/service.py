"""The ``network.service`` finding every port scanner reports: one open port on one host.

nmap and the built-in tcp-ports check both build their findings here, so the same open
port gets the same fingerprint whichever tool saw it.
"""

from __future__ import annotations

from contracts.enums import Confidence, EvidenceType, FindingKind, Severity, Transport
from contracts.finding import Asset, Evidence, Finding, normalise_ip
from workers.tools.address import server_name
from workers.tools.base import Target

OPEN_PORT_RULE = "open-port"
_BANNER_LIMIT = 1024


def open_port_finding(
    *,
    ip: str | None,
    host: str | None,
    port: int,
    transport: Transport,
    attributes: dict[str, str],
    banner: str | None = None,
) -> Finding:
    service = attributes.get("service")
    title = f"Open port {port}/{transport.value}" + (f" ({service})" if service else "")
    evidence = []
    if banner:
        evidence.append(
            Evidence(
                type=EvidenceType.BANNER, label="service banner", content=banner[:_BANNER_LIMIT]
            )
        )
    return Finding(
        kind=FindingKind.NETWORK_SERVICE,
        rule_id=OPEN_PORT_RULE,
        title=title,
        severity=Severity.INFO,
        confidence=Confidence.HIGH,
        asset=Asset(host=host, ip=ip, transport=transport, port=port),
        attributes=attributes,
        evidence=evidence,
        description="The port accepted a connection: a service listens on it.",
    )


def known_host_name(target: Target, ip: str) -> str | None:
    """The target's host name, when the scanned ``ip`` is the address the target resolved to."""
    name = server_name(target)
    if name is None:
        return None
    if target.ip is not None and normalise_ip(target.ip) != ip:
        return None
    return name
