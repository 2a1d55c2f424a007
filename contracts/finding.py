"""The canonical finding: what a tool saw, on which asset, and why it matters."""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contracts.enums import Confidence, EvidenceType, FindingKind, Severity, Transport

#: Identity keys each kind must carry besides its asset. Extra identity keys are allowed.
REQUIRED_IDENTITY_KEYS: dict[FindingKind, tuple[str, ...]] = {
    FindingKind.NETWORK_SERVICE: (),
    FindingKind.WEB_EXPOSURE: (),
    FindingKind.WEB_TEMPLATE: (),
    FindingKind.TLS: (),
    FindingKind.DNS_MAIL: ("domain",),
    FindingKind.PACKAGE_VULN: ("package", "vulnerability_id"),
}

#: Asset fields each kind must carry.
REQUIRED_ASSET_FIELDS: dict[FindingKind, tuple[str, ...]] = {
    FindingKind.NETWORK_SERVICE: ("port",),
    FindingKind.WEB_EXPOSURE: ("url",),
    FindingKind.WEB_TEMPLATE: (),
    FindingKind.TLS: ("port",),
    FindingKind.DNS_MAIL: (),
    FindingKind.PACKAGE_VULN: (),
}

IdentityValue = Annotated[str, Field(max_length=1024)] | int | bool

_FORBIDDEN_IN_HOST = re.compile(r"\s|^-")


def normalise_ip(value: str) -> str:
    """Canonical text of an IPv4 or IPv6 address; strict dotted-quad for IPv4."""
    text = value.strip()
    if ":" not in text:
        try:
            # The C path is ~20x faster than ipaddress and as strict (no octal, no short forms).
            return socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, text))
        except (OSError, ValueError):
            pass
    try:
        address = ipaddress.ip_address(text)
    except ValueError as exc:
        raise ValueError(f"not an IP address: {value!r}") from exc
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)  # ::ffff:127.0.0.1 is 127.0.0.1
    return str(address)


def normalise_host(value: str) -> str:
    """A host name as stored: stripped, without a trailing dot, lower-case."""
    host = value.strip().rstrip(".").lower()
    if not host:
        raise ValueError("host must not be empty")
    if _FORBIDDEN_IN_HOST.search(host):
        raise ValueError("host must not start with '-' or contain whitespace")
    return host


def checked_url(value: str) -> str:
    """The URL, stripped, if it has a scheme, a host and a valid port (if any)."""
    parts = urlsplit(value.strip())
    if not parts.scheme or not parts.hostname:
        raise ValueError(f"url needs a scheme and a host: {value!r}")
    try:
        parts.port  # noqa: B018 (raises ValueError for a port out of range or not a number)
    except ValueError as exc:
        raise ValueError(f"url has an invalid port: {value!r}") from exc
    return value.strip()


def kind_requirements_unmet(
    kind: FindingKind, identity: dict[str, Any], asset_fields: dict[str, Any]
) -> str | None:
    """Why a finding of ``kind`` lacks what its kind needs, or None if it has it all."""
    missing = [k for k in REQUIRED_IDENTITY_KEYS[kind] if k not in identity]
    if missing:
        return f"{kind.value} finding needs identity keys {missing}"
    absent = [f for f in REQUIRED_ASSET_FIELDS[kind] if asset_fields.get(f) is None]
    if absent:
        return f"{kind.value} finding needs asset fields {absent}"
    return None


_MODEL_CONFIG = ConfigDict(extra="ignore", frozen=True)

#: Top-level messages: unknown fields are ignored (a newer minor producer may add
#: optional ones) and the ``schema`` field is written under its wire name.
MESSAGE_CONFIG = ConfigDict(
    extra="ignore", frozen=True, populate_by_name=True, serialize_by_alias=True
)


class ToolInfo(BaseModel):
    """The tool that produced a message."""

    model_config = _MODEL_CONFIG

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")]
    version: Annotated[str, Field(max_length=128)] = "unknown"


class Asset(BaseModel):
    """Where a finding lives. ``host`` or ``ip`` (or both) is required."""

    model_config = _MODEL_CONFIG

    host: Annotated[str, Field(max_length=253)] | None = None
    ip: str | None = None
    transport: Transport | None = None
    port: Annotated[int, Field(ge=0, le=65535)] | None = None
    url: Annotated[str, Field(max_length=4096)] | None = None

    @field_validator("host")
    @classmethod
    def _normalise_host(cls, value: str | None) -> str | None:
        return None if value is None else normalise_host(value)

    @field_validator("ip")
    @classmethod
    def _normalise_ip(cls, value: str | None) -> str | None:
        return None if value is None else normalise_ip(value)

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str | None) -> str | None:
        return None if value is None else checked_url(value)

    @model_validator(mode="after")
    def _needs_address(self) -> Asset:
        if self.host is None and self.ip is None:
            raise ValueError("asset needs a host or an ip")
        if self.port is not None and self.transport is None:
            object.__setattr__(self, "transport", Transport.TCP)
        return self

    @property
    def address(self) -> str:
        """The stable address of the asset: the host name if known, else the IP."""
        return self.host if self.host is not None else str(self.ip)


class Evidence(BaseModel):
    """One piece of evidence. Large bodies travel as an artifact reference."""

    model_config = _MODEL_CONFIG

    type: EvidenceType
    label: Annotated[str, Field(max_length=256)] | None = None
    content: Annotated[str, Field(max_length=65536)] | None = None
    media_type: Annotated[str, Field(max_length=128)] | None = None
    artifact_ref: Annotated[str, Field(max_length=1024)] | None = None
    data: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _has_payload(self) -> Evidence:
        if self.content is None and self.artifact_ref is None and self.data is None:
            raise ValueError("evidence needs content, data or an artifact_ref")
        return self


class Finding(BaseModel):
    """The canonical finding, as carried by a ``FindingEvent``."""

    model_config = _MODEL_CONFIG

    kind: FindingKind
    rule_id: Annotated[str, Field(min_length=1, max_length=256)]
    title: Annotated[str, Field(min_length=1, max_length=512)]
    severity: Severity
    confidence: Confidence = Confidence.MEDIUM
    asset: Asset
    identity: dict[str, IdentityValue] = Field(default_factory=dict)
    attributes: dict[str, Any] = Field(default_factory=dict)
    description: Annotated[str, Field(max_length=16384)] | None = None
    evidence: Annotated[list[Evidence], Field(max_length=64)] = Field(default_factory=list)
    remediation: Annotated[str, Field(max_length=8192)] | None = None
    references: Annotated[list[Annotated[str, Field(max_length=2048)]], Field(max_length=64)] = (
        Field(default_factory=list)
    )
    cwe: list[Annotated[str, Field(pattern=r"^CWE-\d+$")]] = Field(default_factory=list)
    cve: list[Annotated[str, Field(pattern=r"^CVE-\d{4}-\d{4,}$")]] = Field(default_factory=list)
    cvss: Annotated[float, Field(ge=0.0, le=10.0)] | None = None

    @model_validator(mode="after")
    def _kind_requirements(self) -> Finding:
        problem = kind_requirements_unmet(self.kind, self.identity, self.asset.__dict__)
        if problem:
            raise ValueError(problem)
        return self
