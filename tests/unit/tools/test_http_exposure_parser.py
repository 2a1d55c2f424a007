"""The http-exposure parser on real recorded runs: which exposures are reported, that
catch-all sites report nothing, that secrets never reach a finding, and that findings keep
their fingerprints from one run to the next."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest

from contracts.enums import Confidence, EvidenceType, FindingKind, Severity
from contracts.finding import Finding
from contracts.fingerprint import attribute_hash, fingerprint
from tests.fixtures.tools.record import SECRETS_IN_EXPOSED_SITE, load_case
from workers.tools.base import Target, ToolError
from workers.tools.http_exposure.parser import EVIDENCE_BYTES, parse
from workers.tools.http_exposure.paths import PROBES, PROBES_BY_PATH

EXPOSED = {
    ("exposed-git-metadata", "/.git/HEAD"),
    ("exposed-git-config", "/.git/config"),
    ("exposed-dotenv", "/.env"),
    ("directory-listing-uploads", "/uploads/"),
    ("exposed-backup-zip", "/backup.zip"),
    ("exposed-dump-sql", "/dump.sql"),
    ("exposed-apache-server-status", "/server-status"),
    ("exposed-htpasswd", "/.htpasswd"),
    ("exposed-private-key", "/id_rsa"),
    ("exposed-spring-actuator-env", "/actuator/env"),
}


def reported(findings: list[Finding]) -> set[tuple[str, str]]:
    return {(f.rule_id, str(f.identity["path"])) for f in findings}


def case(name: str) -> tuple[dict[str, Any], Target]:
    raw, target, _ = load_case("http_exposure", name)
    return json.loads(raw), target


def parse_document(document: dict[str, Any], target: Target) -> list[Finding]:
    return parse(json.dumps(document).encode(), target)


def probe_response(document: dict[str, Any], path: str) -> dict[str, Any]:
    return next(p for p in document["probes"] if p["path"] == path)


def test_exposed_site_findings_are_exactly_the_exposed_paths() -> None:
    raw, target, _ = load_case("http_exposure", "exposed-site")
    findings = parse(raw, target)
    assert reported(findings) == EXPOSED
    assert len(findings) == len(EXPOSED)


def test_near_misses_are_not_reported() -> None:
    """Answered 200 but not the file (phpinfo.php, backup.tar.gz), or refused (403)."""
    document, target = case("exposed-site")
    assert probe_response(document, "/phpinfo.php")["status"] == 200
    assert probe_response(document, "/backup.tar.gz")["status"] == 200
    assert probe_response(document, "/.aws/credentials")["status"] == 403
    paths = {path for _, path in reported(parse_document(document, target))}
    assert not paths & {"/phpinfo.php", "/backup.tar.gz", "/.aws/credentials"}


def test_findings_are_web_exposures_on_the_base_url_identified_by_path() -> None:
    raw, target, _ = load_case("http_exposure", "exposed-site")
    for finding in parse(raw, target):
        probe = PROBES_BY_PATH[str(finding.identity["path"])]
        assert finding.kind is FindingKind.WEB_EXPOSURE
        assert finding.identity == {"path": probe.path}
        assert (finding.severity, finding.title) == (probe.severity, probe.title)
        assert finding.confidence is Confidence.HIGH
        assert finding.asset.url == target.url
        assert (finding.asset.host, finding.asset.ip) == ("localhost", "127.0.0.1")
        assert finding.attributes["status"] == 200
        assert finding.attributes["url"] == str(target.url).rstrip("/") + probe.path
        assert finding.cwe == [probe.kind.cwe]
        assert finding.remediation


def test_severities() -> None:
    raw, target, _ = load_case("http_exposure", "exposed-site")
    severity = {f.rule_id: f.severity for f in parse(raw, target)}
    assert severity["exposed-dotenv"] is Severity.CRITICAL
    assert severity["exposed-private-key"] is Severity.CRITICAL
    assert severity["exposed-git-metadata"] is Severity.HIGH
    assert severity["exposed-apache-server-status"] is Severity.MEDIUM


def test_a_site_answering_200_to_every_path_reports_nothing() -> None:
    document, target = case("catch-all")
    assert document["baseline"]["status"] == 200
    assert {p["status"] for p in document["probes"]} == {200}
    assert parse_document(document, target) == []


def test_a_site_redirecting_every_path_to_a_login_page_reports_nothing() -> None:
    document, target = case("login-redirect")
    assert document["base_url"] == str(target.url).rsplit("/", 1)[0] + "/"
    for response in (document["baseline"], *document["probes"]):
        assert response["status"] == 200
        [redirect] = response["redirects"]
        assert redirect.endswith("/login?[REDACTED]")  # the token in the query is not kept
    assert parse_document(document, target) == []


def test_an_answer_like_the_baseline_is_not_reported_even_if_its_check_passes() -> None:
    """A server that answers an unknown path with the same body as .env's is a catch-all."""
    document, target = case("exposed-site")
    dotenv = probe_response(document, "/.env")
    document["baseline"] = {**dotenv, "path": "/nothing-here", "url": dotenv["url"] + ".x"}
    assert ("exposed-dotenv", "/.env") not in reported(parse_document(document, target))


def test_a_catch_all_page_that_echoes_the_path_still_matches_the_baseline() -> None:
    document, target = case("exposed-site")
    page = "<html><body><h1>Index of {0}</h1><p>no such page: {0}</p></body></html>"
    baseline_path = document["baseline"]["path"]
    document["baseline"].update(status=200, body=page.format(baseline_path))
    uploads = probe_response(document, "/uploads/")
    uploads["body"] = page.format("/uploads/")
    assert ("directory-listing-uploads", "/uploads/") not in reported(
        parse_document(document, target)
    )
    uploads["body"] = "<html><head><title>Index of /uploads</title></head>a.pdf b.pdf c.pdf"
    assert ("directory-listing-uploads", "/uploads/") in reported(parse_document(document, target))


def test_probes_that_failed_are_skipped() -> None:
    document, target = case("exposed-site")
    dotenv = probe_response(document, "/.env")
    dotenv.update(status=None, error="TimeoutError: timed out")
    assert ("exposed-dotenv", "/.env") not in reported(parse_document(document, target))


def test_recorded_output_and_findings_hold_no_secrets() -> None:
    for name in ("exposed-site", "exposed-site-again"):
        raw, target, _ = load_case("http_exposure", name)
        dumped = "".join(f.model_dump_json() for f in parse(raw, target))
        for secret in (*SECRETS_IN_EXPOSED_SITE, "9a8b7c6d"):
            assert secret.encode() not in raw
            assert secret not in dumped


def test_evidence_is_the_redacted_response() -> None:
    raw, target, _ = load_case("http_exposure", "exposed-site")
    by_rule = {f.rule_id: f for f in parse(raw, target)}
    [evidence] = by_rule["exposed-dotenv"].evidence
    assert evidence.type is EvidenceType.HTTP_RESPONSE
    content = evidence.content or ""
    assert content.startswith("HTTP/1.1 200 OK\r\n")
    assert "Content-Type: text/plain\r\n" in content
    assert "\r\n\r\nAPP_NAME=[REDACTED]\n" in content
    assert "DB_PASSWORD=[REDACTED]\nSTRIPE_SECRET=[REDACTED]\n" in content
    git_config = by_rule["exposed-git-config"].evidence[0].content or ""
    assert "url = https://deploy:[REDACTED]@git.example.test/shop/web.git" in git_config
    key = by_rule["exposed-private-key"].evidence[0].content or ""
    assert "-----BEGIN OPENSSH PRIVATE KEY-----\n[REDACTED]\n-----END" in key
    dump = by_rule["exposed-dump-sql"].evidence[0].content or ""
    assert "CREATE TABLE `users`" in dump and "INSERT" not in dump
    archive = by_rule["exposed-backup-zip"].evidence[0].content or ""
    assert re.search(r"\[binary body, \d+ bytes read; first bytes in base64: UEsDB", archive)


def test_secrets_that_reach_the_parser_unredacted_are_redacted() -> None:
    document, target = case("exposed-site")
    probe_response(document, "/.env")["body"] = (
        "DB_PASSWORD=plain-leak\nexport API_TOKEN='tok-leak'\nDEBUG=false\n"
    )
    probe_response(document, "/.git/config")["body"] = (
        "[core]\n\tbare = false\n[remote]\n\turl = https://bob:pw-leak@git.test/x.git\n"
    )
    probe_response(document, "/.htpasswd")["body"] = "admin:$apr1$salt$hash-leak\n"
    findings = parse_document(document, target)
    assert {("exposed-dotenv", "/.env"), ("exposed-git-config", "/.git/config")} <= reported(
        findings
    )
    assert ("exposed-htpasswd", "/.htpasswd") in reported(findings)
    dumped = "".join(f.model_dump_json() for f in findings)
    for secret in ("plain-leak", "tok-leak", "pw-leak", "hash-leak", "salt"):
        assert secret not in dumped


def test_evidence_shows_at_most_one_kibibyte_of_the_body() -> None:
    document, target = case("exposed-site")
    probe_response(document, "/.env")["body"] = "".join(f"KEY_{i}=value\n" for i in range(400))
    [finding] = [f for f in parse_document(document, target) if f.rule_id == "exposed-dotenv"]
    content = finding.evidence[0].content or ""
    body = content.split("\r\n\r\n", 1)[1]
    assert 0 < len(body.encode()) <= EVIDENCE_BYTES


def test_fingerprints_are_stable_across_two_runs() -> None:
    first, target = case("exposed-site")
    again, target_again = case("exposed-site-again")
    assert target == target_again
    # The runs differ: another baseline path, other times, another server-status page.
    assert first["baseline"]["path"] != again["baseline"]["path"]
    assert (
        probe_response(first, "/server-status")["body"]
        != (probe_response(again, "/server-status")["body"])
    )
    findings = parse_document(first, target)
    findings_again = parse_document(again, target)
    assert {fingerprint(f) for f in findings} == {fingerprint(f) for f in findings_again}
    assert len({fingerprint(f) for f in findings}) == len(EXPOSED)
    # Nothing volatile in the attributes either: a second run is "unchanged", not "updated".
    assert {attribute_hash(f) for f in findings} == {attribute_hash(f) for f in findings_again}


def test_the_probe_list() -> None:
    assert len(PROBES) >= 45
    assert len({p.rule_id for p in PROBES}) == len(PROBES)
    assert len({p.path for p in PROBES}) == len(PROBES)
    for probe in PROBES:
        assert probe.path.startswith("/") and "//" not in probe.path and "?" not in probe.path
        assert re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)+", probe.rule_id)
        assert probe.title and probe.confirms and probe.kind.remediation


def _with_body(path: str, body: str | bytes, status: int = 200) -> set[tuple[str, str]]:
    document, target = case("exposed-site")
    response = probe_response(document, path)
    response["status"] = status
    if isinstance(body, bytes):
        response.update(body=base64.b64encode(body).decode(), body_encoding="base64")
    else:
        response.update(body=body, body_encoding="text")
    return {pair for pair in reported(parse_document(document, target)) if pair[1] == path}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/.git/HEAD", "0123456789abcdef0123456789abcdef01234567\n"),
        ("/.svn/entries", "12\n"),
        ("/.svn/wc.db", b"SQLite format 3\x00\x10\x00"),
        ("/.DS_Store", b"\x00\x00\x00\x01Bud1\x00\x00\x10"),
        ("/.hg/requires", "dotencode\nfncache\ngeneraldelta\nrevlogv1\nstore\n"),
        ("/.aws/credentials", "[default]\naws_access_key_id = AKIA[REDACTED]\n"),
        ("/.npmrc", "//registry.npmjs.org/:_authToken=[REDACTED]\n"),
        ("/.dockercfg", '{"https://index.docker.io/v1/":{"auth":"[REDACTED]"}}'),
        ("/wp-config.php.bak", "<?php\ndefine( 'DB_NAME', '[REDACTED]' );\n"),
        ("/metrics", "# HELP up Up.\n# TYPE up gauge\nup 1\n"),
        ("/nginx_status", "Active connections: 2\nserver accepts handled requests\n 1 1 1\n"),
        ("/phpinfo.php", "<html><head><title>PHP 8.2.7 - phpinfo()</title></head></html>"),
        ("/actuator/heapdump", b"JAVA PROFILE 1.0.2\x00\x00\x00\x00\x08"),
        ("/.index.php.swp", b"b0VIM 9.0\x00\x00\x00\x00\x10"),
        ("/backup.tar.gz", b"\x1f\x8b\x08\x00\x00\x00\x00\x00"),
        ("/db.sql", "--\n-- PostgreSQL database dump\n--\nSET statement_timeout = 0;\n"),
        ("/logs/", "<html><head><title>Directory listing for /logs/</title></head></html>"),
        ("/storage/logs/laravel.log", "[2026-11-20 10:00:00] production.ERROR: boom\n"),
        ("/.bash_history", "ls -la\ncd /var/www\nsudo systemctl restart nginx\n"),
    ],
)
def test_content_checks_confirm_real_files(path: str, body: str | bytes) -> None:
    assert _with_body(path, body) == {(PROBES_BY_PATH[path].rule_id, path)}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/.git/HEAD", "<html><body>ref: refs/heads/main</body></html>"),
        ("/.env", "<!doctype html><html><body>A=B</body></html>"),
        ("/.env", "Welcome!\nThis is our shop.\nPRICE=10\n"),
        ("/backup.zip", "PK but text"),
        ("/dump.sql", "<html>-- MySQL dump</html>"),
        ("/id_rsa", "no key here"),
        ("/server-status", "<html>Server status: fine</html>"),
        ("/uploads/", "<html><body>Uploads are disabled</body></html>"),
        ("/.htpasswd", "admin:nope here\n"),
    ],
)
def test_content_checks_reject_other_pages(path: str, body: str | bytes) -> None:
    assert _with_body(path, body) == set()


def test_only_200_and_206_answers_count() -> None:
    assert _with_body("/.git/HEAD", "ref: refs/heads/main\n", status=206)
    for status in (201, 301, 401, 403, 404, 500):
        assert _with_body("/.git/HEAD", "ref: refs/heads/main\n", status=status) == set()


def test_unknown_probe_paths_are_ignored() -> None:
    document, target = case("exposed-site")
    probe_response(document, "/.env")["path"] = "/.env.retired-probe"
    assert ("exposed-dotenv", "/.env") not in reported(parse_document(document, target))


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.pop("baseline"), "baseline"),
        (lambda d: d.update(tool="http-headers"), "tool"),
        (lambda d: d.update(base_url="ftp://x/"), "unusable base_url"),
        (lambda d: d["probes"][0].update(status=42), "status"),
        (lambda d: d["probes"][0].update(body_encoding="hex"), "body_encoding"),
        (
            lambda d: probe_response(d, "/backup.zip").update(body="%%%"),
            "bad base64",
        ),
    ],
)
def test_malformed_output_is_a_tool_error(mutate: Any, reason: str) -> None:
    document, target = case("exposed-site")
    mutate(document)
    with pytest.raises(ToolError, match=reason):
        parse_document(document, target)


@pytest.mark.parametrize("raw", [b"", b"<html>", b"{}"])
def test_unreadable_output_is_a_tool_error(raw: bytes) -> None:
    with pytest.raises(ToolError):
        parse(raw, Target(url="http://x/"))
