"""tls-cert observations (JSON) to ``tls`` findings about a server's certificate.

Pure: bytes in, findings out. Expiry is judged against the time the certificate was
observed (recorded in the raw output), not the time of parsing, so a recorded output
always gives the same findings.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.enums import Confidence, EvidenceType, FindingKind, Severity, Transport
from contracts.finding import Asset, Evidence, Finding, normalise_ip
from workers.tools.base import Target, ToolError
from workers.tools.observation import read_observation

DEFAULT_EXPIRY_WARNING_DAYS = 30

#: OpenSSL verify codes that mean "the chain does not lead to a trusted root".
UNTRUSTED_CHAIN_CODES = frozenset(
    {
        2,  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT
        4,  # X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE
        7,  # X509_V_ERR_CERT_SIGNATURE_FAILURE
        18,  # X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
        19,  # X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
        20,  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
        21,  # X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE
        24,  # X509_V_ERR_INVALID_CA
        27,  # X509_V_ERR_CERT_UNTRUSTED
        28,  # X509_V_ERR_CERT_REJECTED
    }
)
#: OpenSSL verify codes for a name or address the certificate is not valid for.
HOSTNAME_MISMATCH_CODES = frozenset({62, 64})  # X509_V_ERR_HOSTNAME_MISMATCH, _IP_ADDRESS_

#: Smallest acceptable key size per key type.
MIN_KEY_BITS = {"RSA": 2048, "DSA": 2048, "EC": 256}


class Verification(BaseModel):
    """The outcome of a handshake that verified the chain (and the name, when known)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ok: bool
    #: OpenSSL's verify code when certificate verification failed.
    code: int | None = None
    message: str | None = None


class CertificateFetch(BaseModel):
    """What one tls-cert run observed: the raw output of the check."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tool: Literal["tls-cert"] = "tls-cert"
    ip: str
    port: Annotated[int, Field(ge=1, le=65535)]
    #: The name sent as SNI and checked against the certificate (None: an IP-only target).
    server_name: str | None = None
    observed_at: AwareDatetime
    expiry_warning_days: Annotated[int, Field(ge=0)] = DEFAULT_EXPIRY_WARNING_DAYS
    protocol: str | None = None
    cipher: str | None = None
    #: The leaf certificate, DER, base64.
    certificate_der: str
    verification: Verification


@dataclass(frozen=True)
class _Rule:
    severity: Severity
    title: str
    remediation: str


RULES: dict[str, _Rule] = {
    "cert-expired": _Rule(
        Severity.HIGH, "TLS certificate has expired", "Renew the certificate and deploy it."
    ),
    "cert-expiring-soon": _Rule(
        Severity.MEDIUM,
        "TLS certificate expires soon",
        "Renew the certificate before it expires; automate renewal.",
    ),
    "cert-self-signed": _Rule(
        Severity.MEDIUM,
        "TLS certificate is self-signed",
        "Use a certificate issued by a trusted (public or internal) certificate authority.",
    ),
    "cert-untrusted": _Rule(
        Severity.MEDIUM,
        "TLS certificate chain is not trusted",
        "Serve the full chain, issued by a certificate authority clients trust.",
    ),
    "cert-hostname-mismatch": _Rule(
        Severity.MEDIUM,
        "TLS certificate does not match the host name",
        "Issue the certificate with the served host name in its subjectAltName.",
    ),
    "cert-weak-key": _Rule(
        Severity.HIGH,
        "TLS certificate has a weak key",
        "Reissue the certificate with an RSA key of at least 2048 bits or an EC P-256 key.",
    ),
}


def parse(raw: bytes, target: Target, *, expiry_warning_days: int | None = None) -> list[Finding]:
    """``expiry_warning_days`` overrides the window recorded in the output."""
    fetch = read_observation(CertificateFetch, raw, "tls-cert")
    cert = _certificate(fetch.certificate_der)
    days = fetch.expiry_warning_days if expiry_warning_days is None else expiry_warning_days
    return _Check(fetch, cert, days).findings()


def _certificate(der_b64: str) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(base64.b64decode(der_b64, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise ToolError(f"tls-cert output holds no readable certificate: {exc}") from exc


def key_info(cert: x509.Certificate) -> tuple[str, int]:
    """(key type, key size in bits) of the certificate's public key."""
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return "unknown", 0
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.key_size
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456
    return type(key).__name__, 0


def is_self_signed(cert: x509.Certificate) -> bool:
    """Issuer is subject and the certificate's own key verifies its signature."""
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def subject_alt_names(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) of the subjectAltName extension."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    dns = [name.lower().rstrip(".") for name in san.get_values_for_type(x509.DNSName)]
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return dns, ips


def matches_host(cert: x509.Certificate, name: str) -> bool:
    """RFC 6125 matching against subjectAltName only (as browsers and OpenSSL do): a
    wildcard stands for exactly one whole left-most label."""
    dns, ips = subject_alt_names(cert)
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return any(ipaddress.ip_address(ip) == address for ip in ips)
    name = name.lower().rstrip(".")
    for pattern in dns:
        if pattern == name:
            return True
        if pattern.startswith("*.") and "." in name:
            label, rest = name.split(".", 1)
            if label and rest == pattern[2:] and "." in rest:
                return True
    return False


class _Check:
    def __init__(self, fetch: CertificateFetch, cert: x509.Certificate, warning_days: int) -> None:
        self.fetch = fetch
        self.cert = cert
        self.warning_days = warning_days
        self.key_type, self.key_bits = key_info(cert)
        self.not_after = cert.not_valid_after_utc
        try:
            self.asset = Asset(
                host=fetch.server_name,
                ip=normalise_ip(fetch.ip),
                transport=Transport.TCP,
                port=fetch.port,
            )
        except ValueError as exc:
            raise ToolError(f"tls-cert output has an invalid address: {exc}") from exc
        self.issuer = cert.issuer.rfc4514_string()
        self.evidence = Evidence(
            type=EvidenceType.CERTIFICATE,
            label=f"certificate of {self.asset.address}:{fetch.port}",
            content=cert.public_bytes(serialization.Encoding.PEM).decode(),
            media_type="application/pem-certificate-chain",
            data=self._certificate_data(),
        )

    def _certificate_data(self) -> dict[str, Any]:
        dns, ips = subject_alt_names(self.cert)
        return {
            "subject": self.cert.subject.rfc4514_string(),
            "issuer": self.issuer,
            "serial": format(self.cert.serial_number, "x"),
            "not_before": self.cert.not_valid_before_utc.isoformat(),
            "not_after": self.not_after.isoformat(),
            "sha256": self.cert.fingerprint(hashes.SHA256()).hex(),
            "key_type": self.key_type,
            "key_bits": self.key_bits,
            "sans": [f"DNS:{n}" for n in dns] + [f"IP:{ip}" for ip in ips],
            "protocol": self.fetch.protocol,
            "cipher": self.fetch.cipher,
            "verification": self.fetch.verification.model_dump(),
        }

    def findings(self) -> list[Finding]:
        now = self.fetch.observed_at
        findings = []
        if now >= self.not_after:
            findings.append(self._finding("cert-expired", f"It expired on {self._date()}."))
        elif self.not_after - now <= timedelta(days=self.warning_days):
            days = (self.not_after - now).days
            findings.append(
                self._finding(
                    "cert-expiring-soon", f"It expires on {self._date()}, in {days} days."
                )
            )
        self_signed = is_self_signed(self.cert)
        if self_signed:
            findings.append(self._finding("cert-self-signed", f"Issuer: {self.issuer}."))
        verification = self.fetch.verification
        if not self_signed and verification.code in UNTRUSTED_CHAIN_CODES:
            findings.append(
                self._finding("cert-untrusted", f"Verification failed: {verification.message}.")
            )
        name = self.fetch.server_name
        if (name is not None and not matches_host(self.cert, name)) or (
            verification.code in HOSTNAME_MISMATCH_CODES
        ):
            findings.append(
                self._finding(
                    "cert-hostname-mismatch", f"It is not valid for {name or self.asset.address}."
                )
            )
        minimum = MIN_KEY_BITS.get(self.key_type)
        if minimum is not None and self.key_bits < minimum:
            findings.append(
                self._finding(
                    "cert-weak-key",
                    f"{self.key_type} key of {self.key_bits} bits (minimum {minimum}).",
                )
            )
        return findings

    def _date(self) -> str:
        return _iso(self.not_after)

    def _finding(self, rule_id: str, description: str) -> Finding:
        rule = RULES[rule_id]
        return Finding(
            kind=FindingKind.TLS,
            rule_id=rule_id,
            title=rule.title,
            severity=rule.severity,
            confidence=Confidence.HIGH,
            asset=self.asset,
            attributes={
                "not_after": self.not_after.isoformat(),
                "issuer": self.issuer,
                "key_bits": self.key_bits,
            },
            description=description,
            evidence=[self.evidence],
            remediation=rule.remediation,
        )


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")
