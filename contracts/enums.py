"""Closed vocabularies shared by every message."""

from enum import StrEnum


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {s: i for i, s in enumerate(Severity)}


class Confidence(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class FindingKind(StrEnum):
    NETWORK_SERVICE = "network.service"
    WEB_EXPOSURE = "web.exposure"
    WEB_TEMPLATE = "web.template"
    TLS = "tls"
    DNS_MAIL = "dns.mail"
    PACKAGE_VULN = "package.vuln"


class Transport(StrEnum):
    TCP = "tcp"
    UDP = "udp"


class EvidenceType(StrEnum):
    TEXT = "text"
    HTTP_RESPONSE = "http_response"
    HTTP_REQUEST = "http_request"
    CERTIFICATE = "certificate"
    BANNER = "banner"
    DNS_RECORD = "dns_record"
    ARTIFACT = "artifact"
