"""tcp-ports observations (JSON) to ``network.service`` findings, one per open port.

The findings are the same rule on the same asset as nmap's, so an open port has one
fingerprint whichever of the two tools saw it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.enums import Transport
from contracts.finding import Finding, normalise_ip
from workers.tools.base import Target, ToolError
from workers.tools.observation import read_observation
from workers.tools.service import known_host_name, open_port_finding

Port = Annotated[int, Field(ge=1, le=65535)]

#: The service usually found on a well-known port: a guess, not a detection.
WELL_KNOWN: dict[int, str] = {
    21: "ftp",
    22: "ssh",
    23: "telnet",
    25: "smtp",
    53: "domain",
    80: "http",
    110: "pop3",
    111: "rpcbind",
    135: "msrpc",
    139: "netbios-ssn",
    143: "imap",
    443: "https",
    445: "microsoft-ds",
    465: "smtps",
    587: "submission",
    993: "imaps",
    995: "pop3s",
    1433: "ms-sql-s",
    1521: "oracle",
    2049: "nfs",
    3306: "mysql",
    3389: "ms-wbt-server",
    5432: "postgresql",
    5672: "amqp",
    5900: "vnc",
    6379: "redis",
    8000: "http-alt",
    8080: "http-proxy",
    8443: "https-alt",
    9200: "elasticsearch",
    11211: "memcache",
    27017: "mongodb",
}

_BANNER_CHARS = 200


class OpenPort(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    port: Port
    #: What the service sent within a short wait without being asked (decoded text).
    banner: str | None = None


class PortScan(BaseModel):
    """What one tcp-ports run observed: the raw output of the check."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tool: Literal["tcp-ports"] = "tcp-ports"
    #: The IP address every connection went to.
    ip: str
    transport: Literal["tcp"] = "tcp"
    ports_scanned: Annotated[int, Field(ge=0)]
    open: list[OpenPort]
    closed: Annotated[int, Field(ge=0)]
    filtered: Annotated[int, Field(ge=0)]


def parse(raw: bytes, target: Target) -> list[Finding]:
    scan = read_observation(PortScan, raw, "tcp-ports")
    try:
        ip = normalise_ip(scan.ip)
    except ValueError as exc:
        raise ToolError(f"tcp-ports output has an invalid ip: {exc}") from exc
    host = known_host_name(target, ip)
    return [
        open_port_finding(
            ip=ip,
            host=host,
            port=entry.port,
            transport=Transport.TCP,
            attributes={"service": WELL_KNOWN[entry.port]} if entry.port in WELL_KNOWN else {},
            banner=printable(entry.banner),
        )
        for entry in sorted(scan.open, key=lambda e: e.port)
    ]


def printable(banner: str | None) -> str | None:
    """The banner as one readable line: control characters escaped, trimmed, capped."""
    if banner is None:
        return None
    text = "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode() for c in banner.strip()
    )
    return text[:_BANNER_CHARS] or None
