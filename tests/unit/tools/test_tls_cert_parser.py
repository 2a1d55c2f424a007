"""The tls-cert parser on real recorded handshakes, and its certificate checks."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from contracts.enums import Confidence, EvidenceType, FindingKind, Severity, Transport
from contracts.finding import Finding
from tests.fixtures.tools.certificates import issue, rsa_key
from tests.fixtures.tools.record import load_case
from workers.tools.base import RunContext, Target, ToolError
from workers.tools.tls_cert import TlsCertTool
from workers.tools.tls_cert.parser import key_info, matches_host, parse


def rule_ids(findings: list[Finding]) -> set[str]:
    return {f.rule_id for f in findings}


def test_expired_self_signed_certificate() -> None:
    raw, target, _ = load_case("tls_cert", "expired-self-signed")
    findings = parse(raw, target)
    assert rule_ids(findings) == {"cert-expired", "cert-self-signed"}
    severities = {f.rule_id: f.severity for f in findings}
    assert severities == {"cert-expired": Severity.HIGH, "cert-self-signed": Severity.MEDIUM}


def test_weak_key_expiring_soon_untrusted_and_wrong_name() -> None:
    raw, target, _ = load_case("tls_cert", "private-ca-weak-key")
    findings = parse(raw, target)
    assert rule_ids(findings) == {
        "cert-expiring-soon",
        "cert-untrusted",
        "cert-hostname-mismatch",
        "cert-weak-key",
    }
    weak = next(f for f in findings if f.rule_id == "cert-weak-key")
    assert weak.severity is Severity.HIGH
    assert weak.attributes["key_bits"] == 1024


def test_certificate_from_a_private_ca_for_the_right_name_is_only_untrusted() -> None:
    raw, target, _ = load_case("tls_cert", "private-ca-localhost")
    assert rule_ids(parse(raw, target)) == {"cert-untrusted"}


def test_findings_sit_on_host_ip_and_port_with_certificate_evidence() -> None:
    raw, target, _ = load_case("tls_cert", "private-ca-weak-key")
    for finding in parse(raw, target):
        assert finding.kind is FindingKind.TLS
        assert finding.confidence is Confidence.HIGH
        assert finding.asset.host == "localhost"
        assert finding.asset.ip == "127.0.0.1"
        assert finding.asset.port == target.port
        assert finding.asset.transport is Transport.TCP
        assert set(finding.attributes) == {"not_after", "issuer", "key_bits"}
        assert finding.attributes["issuer"] == "CN=scanfleet test CA"
        [evidence] = finding.evidence
        assert evidence.type is EvidenceType.CERTIFICATE
        assert evidence.data is not None
        assert evidence.data["subject"] == "CN=other.example"
        assert evidence.data["key_type"] == "RSA"
        assert evidence.data["key_bits"] == 1024
        assert evidence.data["sans"] == ["DNS:other.example"]
        assert len(evidence.data["sha256"]) == 64
        for key in ("serial", "not_before", "not_after", "issuer"):
            assert evidence.data[key]
        assert (evidence.content or "").startswith("-----BEGIN CERTIFICATE-----")


def test_expiry_is_judged_at_observation_time_so_recordings_stay_stable() -> None:
    raw, target, _ = load_case("tls_cert", "private-ca-localhost")
    observed = json.loads(raw)["observed_at"]
    assert datetime.fromisoformat(observed) < datetime.now(UTC)
    assert "cert-expired" not in rule_ids(parse(raw, target))


def test_expiry_warning_window_is_configurable() -> None:
    raw, target, _ = load_case("tls_cert", "private-ca-weak-key")  # expires in ~10 days
    assert "cert-expiring-soon" in rule_ids(parse(raw, target, expiry_warning_days=30))
    assert "cert-expiring-soon" not in rule_ids(parse(raw, target, expiry_warning_days=5))
    ctx = RunContext(target, time_limit_s=60, options={"expiry_warning_days": 5})
    assert "cert-expiring-soon" not in rule_ids(TlsCertTool().parse(raw, ctx))
    with pytest.raises(ToolError, match="expiry_warning_days"):
        TlsCertTool().parse(raw, RunContext(target, 60, options={"expiry_warning_days": "x"}))


# -- checks on certificates made here ------------------------------------------------------


def observation(cert_der: bytes, **overrides: Any) -> bytes:
    document: dict[str, Any] = {
        "ip": "127.0.0.1",
        "port": 443,
        "server_name": "www.example.test",
        "observed_at": datetime.now(UTC).isoformat(),
        "certificate_der": base64.b64encode(cert_der).decode(),
        "verification": {"ok": True},
    }
    document.update(overrides)
    return json.dumps(document).encode()


def der(**kwargs: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return issue(**kwargs).certificate.public_bytes(serialization.Encoding.DER)


CA = issue("test CA", ca=True)


def test_a_trusted_valid_certificate_gives_no_findings() -> None:
    raw = observation(der(common_name="www.example.test", issuer=CA, sans=("www.example.test",)))
    assert parse(raw, Target(host="www.example.test", port=443)) == []


def test_untrusted_needs_a_chain_error_from_the_verifying_handshake() -> None:
    cert = der(common_name="www.example.test", issuer=CA, sans=("www.example.test",))
    target = Target(host="www.example.test")
    for code in (20, 21, 19, 2):
        raw = observation(cert, verification={"ok": False, "code": code, "message": "m"})
        assert rule_ids(parse(raw, target)) == {"cert-untrusted"}
    # A failure that says nothing about the chain is not reported as untrusted.
    for verification in ({"ok": False, "code": 10, "message": "expired"}, {"ok": False}):
        raw = observation(cert, verification=verification)
        assert parse(raw, target) == []


def test_hostname_mismatch_reported_by_openssl_is_kept() -> None:
    cert = der(common_name="www.example.test", issuer=CA, sans=("www.example.test",))
    raw = observation(cert, verification={"ok": False, "code": 62, "message": "mismatch"})
    assert rule_ids(parse(raw, Target(host="www.example.test"))) == {"cert-hostname-mismatch"}


def test_no_name_check_for_an_ip_only_target() -> None:
    raw = observation(der(common_name="x", issuer=CA, sans=("other.test",)), server_name=None)
    assert parse(raw, Target(ip="127.0.0.1")) == []


@pytest.mark.parametrize(
    ("sans", "name", "matches"),
    [
        (("www.example.test",), "www.example.test", True),
        (("WWW.Example.Test",), "www.example.test", True),
        (("*.example.test",), "www.example.test", True),
        (("*.example.test",), "example.test", False),
        (("*.example.test",), "a.b.example.test", False),
        (("*.test",), "example.test", False),
        (("example.test",), "www.example.test", False),
        (("127.0.0.1",), "127.0.0.1", True),
        (("127.0.0.1",), "127.0.0.2", False),
        ((), "www.example.test", False),
    ],
)
def test_host_name_matching(sans: tuple[str, ...], name: str, matches: bool) -> None:
    cert = issue("www.example.test", sans=sans).certificate
    assert matches_host(cert, name) is matches


def test_subject_common_name_alone_does_not_match() -> None:
    raw = observation(der(common_name="www.example.test", issuer=CA))
    assert rule_ids(parse(raw, Target(host="www.example.test"))) == {"cert-hostname-mismatch"}


@pytest.mark.parametrize(
    ("key", "weak"),
    [
        (rsa_key(1024), True),
        (rsa_key(2048), False),
        (ec.generate_private_key(ec.SECP256R1()), False),
        (ec.generate_private_key(ec.SECP224R1()), True),
    ],
    ids=["rsa-1024", "rsa-2048", "ec-p256", "ec-p224"],
)
def test_weak_keys(key: Any, weak: bool) -> None:
    raw = observation(
        der(common_name="www.example.test", issuer=CA, key=key, sans=("www.example.test",))
    )
    findings = parse(raw, Target(host="www.example.test"))
    assert ("cert-weak-key" in rule_ids(findings)) is weak


def test_key_info_names_type_and_size() -> None:
    assert key_info(issue("a", key=rsa_key(2048)).certificate) == ("RSA", 2048)
    assert key_info(issue("a", key=ec.generate_private_key(ec.SECP384R1())).certificate) == (
        "EC",
        384,
    )


def test_expired_and_expiring_are_exclusive() -> None:
    now = datetime.now(UTC)
    expired = der(
        common_name="www.example.test",
        issuer=CA,
        sans=("www.example.test",),
        valid_from=now - timedelta(days=30),
        valid_until=now - timedelta(minutes=1),
    )
    assert rule_ids(parse(observation(expired), Target(host="www.example.test"))) == {
        "cert-expired"
    }


def test_self_signed_needs_its_own_key_to_verify_the_signature() -> None:
    """A certificate whose issuer name equals its subject but signed by another key is not
    self-signed (it is untrusted)."""
    impostor_ca = issue("www.example.test", ca=True)
    cert = der(common_name="www.example.test", issuer=impostor_ca, sans=("www.example.test",))
    raw = observation(cert, verification={"ok": False, "code": 7, "message": "bad signature"})
    assert rule_ids(parse(raw, Target(host="www.example.test"))) == {"cert-untrusted"}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (b"garbage", "not valid"),
        (b'{"ip": "127.0.0.1"}', "port"),
        (observation(b"not a certificate"), "no readable certificate"),
        (observation(b"x").replace(b'"eA=="', b'"%%%"'), "no readable certificate"),
        (observation(b"x", observed_at="2026-01-01T00:00:00"), "observed_at"),
        (observation(der(common_name="a"), ip="nope"), "invalid address"),
    ],
)
def test_malformed_output_is_a_tool_error(raw: bytes, reason: str) -> None:
    with pytest.raises(ToolError, match=reason):
        parse(raw, Target(ip="127.0.0.1"))
