"""nmap XML (``-oX -``) to ``network.service`` findings: one per open port per host.

Pure: bytes in, findings out. The XML comes from a tool we run, but it is still read
defensively: a document type with an internal subset, an external identifier or any
entity declaration is refused before the parser sees it (nmap itself only ever writes the
bare ``<!DOCTYPE nmaprun>``), and anything that is not a finished ``nmaprun`` document is
a :class:`ToolError`, never an empty result that could mark open ports as fixed.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from contracts.enums import Transport
from contracts.finding import Finding, normalise_ip
from workers.tools.base import Target, ToolError
from workers.tools.service import known_host_name, open_port_finding

#: The only document type declaration allowed: the one nmap writes.
_NMAP_DOCTYPE = re.compile(rb"<!DOCTYPE\s+nmaprun\s*>")
_DECLARATION = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_ATTRIBUTES = ("product", "version", "extrainfo", "tunnel")
_TRANSPORTS = {"tcp": Transport.TCP, "udp": Transport.UDP}


def parse(raw: bytes, target: Target) -> list[Finding]:
    root = _document(raw)
    _check_finished(root)
    findings: list[Finding] = []
    for host in root.iter("host"):
        findings.extend(_host_findings(host, target))
    return findings


def _document(raw: bytes) -> ET.Element:
    if not raw.strip():
        raise ToolError("nmap output is empty")
    declarations = _DECLARATION.findall(raw)
    allowed = _NMAP_DOCTYPE.findall(raw)
    if len(declarations) > 1 or len(declarations) != len(allowed):
        raise ToolError("nmap output refused: it declares a DOCTYPE or ENTITY other than nmap's")
    try:
        # DOCTYPE and ENTITY declarations are refused above, so no entity can expand.
        root = ET.fromstring(raw)  # noqa: S314
    except ET.ParseError as exc:
        raise ToolError(f"nmap output is not well-formed XML: {exc}") from exc
    if root.tag != "nmaprun":
        raise ToolError(f"nmap output is not an nmaprun document (root element <{root.tag}>)")
    return root


def _check_finished(root: ET.Element) -> None:
    finished = root.find("runstats/finished")
    if finished is None:
        raise ToolError("nmap output has no runstats: the scan did not finish")
    if finished.get("exit", "success") != "success":
        reason = finished.get("errormsg") or finished.get("summary") or "no reason given"
        raise ToolError(f"nmap reported an error: {reason}")


def _host_findings(host: ET.Element, target: Target) -> list[Finding]:
    ip = _host_ip(host)
    if host.get("timedout") == "true":
        # nmap drops the ports of a timed-out host: an empty list here means "unknown".
        raise ToolError(f"nmap timed out on host {ip} before finishing; no result for it")
    name = _reported_name(host) or known_host_name(target, ip)
    findings = []
    for port in host.iterfind("ports/port"):
        state = port.find("state")
        if state is None or state.get("state") != "open":
            continue
        findings.append(_port_finding(port, ip=ip, host=name))
    return findings


def _host_ip(host: ET.Element) -> str:
    for address in host.iterfind("address"):
        if address.get("addrtype") in ("ipv4", "ipv6"):
            try:
                return normalise_ip(address.get("addr", ""))
            except ValueError as exc:
                raise ToolError(f"nmap reported an invalid host address: {exc}") from exc
    raise ToolError("nmap reported a host without an IP address")


def _reported_name(host: ET.Element) -> str | None:
    names = host.findall("hostnames/hostname")
    names.sort(key=lambda h: h.get("type") != "user")  # the name we asked for first
    for hostname in names:
        name = (hostname.get("name") or "").strip().rstrip(".").lower()
        if name and not name.startswith("-"):
            return name
    return None


def _port_finding(port: ET.Element, *, ip: str, host: str | None) -> Finding:
    protocol = port.get("protocol", "")
    transport = _TRANSPORTS.get(protocol)
    if transport is None:
        raise ToolError(f"nmap reported a port with unsupported protocol {protocol!r}")
    portid = port.get("portid", "")
    if not portid.isdigit() or not 0 <= int(portid) <= 65535:
        raise ToolError(f"nmap reported an invalid port number {portid!r}")
    attributes: dict[str, str] = {}
    service = port.find("service")
    if service is not None:
        if service.get("name"):
            attributes["service"] = service.get("name", "")
        for key in _ATTRIBUTES:
            if service.get(key):
                attributes[key] = service.get(key, "")
    return open_port_finding(
        ip=ip,
        host=host,
        port=int(portid),
        transport=transport,
        attributes=attributes,
        banner=_banner(attributes),
    )


def _banner(attributes: dict[str, str]) -> str | None:
    """``product version (extrainfo)`` as nmap's version detection identified it."""
    words = [attributes[k] for k in ("product", "version") if k in attributes]
    if "extrainfo" in attributes:
        words.append(f"({attributes['extrainfo']})")
    return " ".join(words) or None
