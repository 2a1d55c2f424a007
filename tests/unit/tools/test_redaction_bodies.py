"""Body redaction: secrets in files a web server exposes never reach the output."""

from __future__ import annotations

import pytest

from workers.tools.redaction import REDACTED, BodySecrets, redact_text

R = REDACTED
GENERIC, ALL, ROWS = BodySecrets.GENERIC, BodySecrets.ALL_VALUES, BodySecrets.DATA_ROWS

CASES = [
    # .env and other secret stores: every value.
    (ALL, "APP_ENV=prod\nDB_PASSWORD=hunter2\n# note\n", f"APP_ENV={R}\nDB_PASSWORD={R}\n# note\n"),
    (ALL, "export API_TOKEN = 'abc'\n", f"export API_TOKEN = {R}\n"),
    (
        ALL,
        "[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrX\n",
        f"[default]\naws_access_key_id = AKIA{R}\naws_secret_access_key = {R}\n",
    ),
    (ALL, "//registry.npmjs.org/:_authToken=npm_x\n", f"//registry.npmjs.org/:_authToken={R}\n"),
    (ALL, '{"h":{"auth":"dXNlcjpwYXNz","email":"a@b"}}', f'{{"h":{{"auth":"{R}","email":"{R}"}}}}'),
    (ALL, "admin:$apr1$salt$hash\nbob:{SHA}abc=\n", f"admin:$apr1${R}\nbob:{{SHA}}{R}\n"),
    (ALL, "services:\n  db:\n    image: postgres\n", f"services:\n  db:\n    image: {R}\n"),
    # Anywhere: secret-looking names, URL passwords, private keys, tokens.
    (GENERIC, "DB_PASSWORD=x\nDEBUG=true\n", f"DB_PASSWORD={R}\nDEBUG=true\n"),
    (GENERIC, "      - POSTGRES_PASSWORD=pw\n", f"      - POSTGRES_PASSWORD={R}\n"),
    (GENERIC, "password: s3cret\nuser: bob\n", f"password: {R}\nuser: bob\n"),
    (GENERIC, "url = https://bob:pw@git.test/x", f"url = https://bob:{R}@git.test/x"),
    (GENERIC, "url = https://ghp_tok@git.test/x", f"url = https://{R}@git.test/x"),
    (GENERIC, "GET /a?session=abc&page=2 HTTP/1.1", f"GET /a?session={R}&page=2 HTTP/1.1"),
    (GENERIC, "define('DB_PASSWORD', 'pw');", f"define('DB_PASSWORD', '{R}');"),
    (GENERIC, "$db_pass = \"pw\";\n$title = 'Shop';", f"$db_pass = \"{R}\";\n$title = 'Shop';"),
    (GENERIC, "Bearer eyJhbGciOiJI.eyJzdWIiOjF9.c2ln", f"Bearer {R}"),
    (
        GENERIC,
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        f"-----BEGIN RSA PRIVATE KEY-----\n{R}\n-----END RSA PRIVATE KEY-----\n",
    ),
    (GENERIC, "-----BEGIN PRIVATE KEY-----\nMIIEow (cut", f"-----BEGIN PRIVATE KEY-----\n{R}\n"),
    # Database dumps: schema and comments, never rows.
    (
        ROWS,
        "-- MySQL dump\nCREATE TABLE `u` (id int);\nINSERT INTO `u` VALUES (1,'a@b');\n",
        f"-- MySQL dump\nCREATE TABLE `u` (id int);\n{R}\n",
    ),
    (ROWS, "COPY public.u (id) FROM stdin;\n1\tsecret\n\\.\n", f"{R}\n{R}\n{R}\n"),
    # Left alone.
    (GENERIC, "ref: refs/heads/main\n", "ref: refs/heads/main\n"),
    (GENERIC, "<title>Index of /uploads</title>", "<title>Index of /uploads</title>"),
    (ALL, "<!doctype html><html><body>hello</body></html>", None),
]


@pytest.mark.parametrize(("secrets", "text", "expected"), CASES)
def test_redaction(secrets: BodySecrets, text: str, expected: str | None) -> None:
    assert redact_text(text, secrets) == (text if expected is None else expected)


@pytest.mark.parametrize(("secrets", "text", "expected"), CASES)
def test_redaction_is_idempotent(secrets: BodySecrets, text: str, expected: str | None) -> None:
    once = redact_text(text, secrets)
    assert redact_text(once, secrets) == once
