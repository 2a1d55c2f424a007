"""Stable finding fingerprints.

The fingerprint is sha256 over canonical JSON (sorted keys, no whitespace) of the
finding's kind, rule id and identity: the asset's address (host name, else IP),
transport, port and URL (scheme, host, port and path, never query or fragment),
plus the kind's own identity keys. Volatile fields (title, description, severity,
banners, versions, timestamps, tool version) never enter it; they feed
:func:`attribute_hash`, which tells an "updated" finding from an "unchanged" one.
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import urlsplit

import orjson

from contracts.enums import Confidence, FindingKind, Severity, Transport
from contracts.finding import Asset, Finding

_DEFAULT_PORTS = {"http": 80, "https": 443}

#: Member -> value for the enums hashed here (the same strings ``.value`` gives; a dict
#: lookup is several times cheaper than that descriptor and this runs for every event).
ENUM_VALUES: dict[str, str] = {
    member: member.value
    for enum in (FindingKind, Severity, Confidence, Transport)
    for member in enum
}


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the one byte form that gets hashed."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def normalise_url(url: str) -> str:
    """scheme://host:port/path, lower-cased scheme and host, default port made explicit."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = _DEFAULT_PORTS.get(scheme)
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    path = parts.path or "/"
    return f"{scheme}://{netloc}{path}"


def asset_identity_of(
    address: str, transport: str | None, port: int | None, url: str | None
) -> dict[str, Any]:
    """The parts of an asset that make it the same asset across scans (plain values)."""
    identity: dict[str, Any] = {"address": address}
    if transport is not None:
        identity["transport"] = transport
    if port is not None:
        identity["port"] = port
    if url is not None:
        identity["url"] = normalise_url(url)
    return identity


def asset_identity(asset: Asset) -> dict[str, Any]:
    """The parts of an asset that make it the same asset across scans."""
    transport = ENUM_VALUES[asset.transport] if asset.transport is not None else None
    return asset_identity_of(asset.address, transport, asset.port, asset.url)


def fingerprint_material_of(
    kind: str, rule_id: str, asset: dict[str, Any], identity: dict[str, Any]
) -> dict[str, Any]:
    """What makes a finding the same finding (plain values; ``asset`` from
    :func:`asset_identity_of`)."""
    return {"kind": kind, "rule_id": rule_id, "asset": asset, "identity": identity}


def fingerprint_material(finding: Finding) -> dict[str, Any]:
    return fingerprint_material_of(
        ENUM_VALUES[finding.kind],
        finding.rule_id,
        asset_identity(finding.asset),
        finding.identity,
    )


def digest(material: dict[str, Any]) -> str:
    """Hex sha256 of the canonical JSON of ``material``: how both hashes are taken."""
    return hashlib.sha256(canonical_json(material)).hexdigest()


def fingerprint(finding: Finding) -> str:
    """Hex sha256 of the finding's identity; equal for the same thing on the same asset."""
    return digest(fingerprint_material(finding))


def attribute_material_of(
    title: str,
    severity: str,
    confidence: str,
    attributes: dict[str, Any],
    cve: list[str],
    cwe: list[str],
    cvss: float | None,
) -> dict[str, Any]:
    """What may change about a finding without it becoming a new one (plain values)."""
    return {
        "title": title,
        "severity": severity,
        "confidence": confidence,
        "attributes": attributes,
        "cve": sorted(cve),
        "cwe": sorted(cwe),
        "cvss": cvss,
    }


def attribute_material(finding: Finding) -> dict[str, Any]:
    return attribute_material_of(
        finding.title,
        ENUM_VALUES[finding.severity],
        ENUM_VALUES[finding.confidence],
        finding.attributes,
        finding.cve,
        finding.cwe,
        finding.cvss,
    )


def attribute_hash(finding: Finding) -> str:
    """Hex sha256 of what may change about a finding without it becoming a new one."""
    return digest(attribute_material(finding))
