"""Secrets never leave the worker: what built-in checks redact before anything is recorded.

Headers (:func:`redact`): cookie values, credentials and token-like headers, query strings
of redirect targets. Bodies (:func:`redact_text`): private keys, passwords in URLs,
secret-looking assignments, and, for files that are secret stores (``.env``, credentials),
every value. Each function is idempotent: redacting twice gives the same text.
"""

from __future__ import annotations

import re
from enum import StrEnum

REDACTED = "[REDACTED]"
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_SECRET_WORDS = ("token", "secret", "password", "api-key", "apikey", "session")


def redact(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers with secret values replaced by ``[REDACTED]``; cookie names and
    attributes are kept, cookie values are not."""
    return [(name, _redacted_value(name, value)) for name, value in headers]


def _redacted_value(name: str, value: str) -> str:
    lower = name.lower()
    if lower == "set-cookie":
        first, sep, attributes = value.partition(";")
        cookie_name, eq, _ = first.partition("=")
        redacted = f"{cookie_name.strip()}={REDACTED}" if eq else REDACTED
        return redacted + (f";{attributes}" if sep else "")
    if lower in _SECRET_HEADERS or any(word in lower for word in _SECRET_WORDS):
        return REDACTED
    if lower in ("location", "content-location", "refresh") and "?" in value:
        # Redirects often carry tokens in their query string: keep the path only.
        head, _, _query = value.partition("?")
        return f"{head}?{REDACTED}"
    return value


class BodySecrets(StrEnum):
    """How much of a response body is secret."""

    #: Only what looks like a secret: private keys, URL passwords, ``password=...``.
    GENERIC = "generic"
    #: A secret store (.env, credentials, a config file): every assigned value.
    ALL_VALUES = "all-values"
    #: A database dump: only comments and schema statements are kept, never rows.
    DATA_ROWS = "data-rows"


#: Names of settings whose values are secrets (matched inside the name, any case).
_SENSITIVE_NAME = (
    r"(?:pass|pwd|secret|token|api[_-]?key|auth|credential|private|session|salt"
    r"|access[_-]?key|signing|cookie)"
)
_PRIVATE_KEY = re.compile(
    r"(-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----)(?:(?!-----END).)*"
    r"(-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
    re.DOTALL,
)
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^\s/@:'\"<>]+)(:[^\s/@'\"<>]*)?@")
_QUERY_SECRET = re.compile(
    rf"(?i)([?&;][^=\s&;#'\"<>]*{_SENSITIVE_NAME}[^=\s&;#'\"<>]*=)[^&;\s#'\"<>]+"
)
_AWS_KEY_ID = re.compile(r"\b((?:AKIA|ASIA)[0-9A-Z]{16})\b")
_JWT = re.compile(r"\beyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]+")
#: ``"key": "value"`` (JSON), the value a string.
_JSON_PAIR = re.compile(r'("([^"\\]*)"\s*:\s*)"((?:[^"\\]|\\.)*)"')
#: ``define('KEY', 'value')`` (PHP configuration files).
_PHP_DEFINE = re.compile(r"""(?i)(define\(\s*(['"])([^'"]+)\2\s*,\s*)(['"])((?:(?!\4).)*)\4""")
#: ``$name = 'value'`` (PHP variables).
_PHP_VARIABLE = re.compile(r"""(\$(\w+)\s*=\s*)(['"])((?:(?!\3).)*)\3""")
#: ``KEY=value`` and ``key = value`` lines (.env, ini, properties, .npmrc).
_ASSIGNMENT = re.compile(r"(?m)^(\s*(?:export\s+|-\s+)?([^\s=#;<>\[]+?)\s*=[ \t]*)(\S.*?)[ \t]*$")
#: ``key: value`` lines (YAML, headers-like files).
_COLON_PAIR = re.compile(r"""(?m)^(\s*(?:-\s+)?["']?([\w.\-]+)["']?\s*:[ \t]+)(\S.*?)[ \t]*$""")
#: ``user:hash`` lines (.htpasswd): the hash scheme is kept, the hash is not.
_USER_HASH = re.compile(r"(?m)^([\w.@-]+:)(?![^\n]*\[REDACTED\])(\$[\w.]+\$|\{S?SHA\})?[^\s:]{2,}$")
_DUMP_KEEP = re.compile(
    r"(?i)^\s*(?:--|/\*|#|$|(?:CREATE|DROP|ALTER|SET|USE|LOCK|UNLOCK|PRAGMA|BEGIN|COMMIT|"
    r"START|\\connect|SELECT pg_catalog\.set_config)\b)"
)


def redact_text(text: str, secrets: BodySecrets = BodySecrets.GENERIC) -> str:
    """``text`` with secrets replaced by ``[REDACTED]`` (idempotent)."""
    if secrets is BodySecrets.DATA_ROWS:
        text = "\n".join(line if _DUMP_KEEP.match(line) else REDACTED for line in text.split("\n"))
    everything = secrets is BodySecrets.ALL_VALUES
    text = _PRIVATE_KEY.sub(lambda m: f"{m[1]}\n{REDACTED}\n{m[2]}", text)
    text = _URL_USERINFO.sub(_userinfo, text)
    text = _QUERY_SECRET.sub(rf"\1{REDACTED}", text)
    text = _AWS_KEY_ID.sub(lambda m: m[1][:4] + REDACTED, text)
    text = _JWT.sub(REDACTED, text)
    text = _JSON_PAIR.sub(lambda m: _value(m, 2, 3, everything, quote='"'), text)
    text = _PHP_DEFINE.sub(lambda m: _value(m, 3, 5, everything, quote=m[4]), text)
    text = _PHP_VARIABLE.sub(lambda m: _value(m, 2, 4, everything, quote=m[3]), text)
    text = _ASSIGNMENT.sub(lambda m: _value(m, 2, 3, everything), text)
    text = _COLON_PAIR.sub(lambda m: _value(m, 2, 3, everything), text)
    if everything:
        text = _USER_HASH.sub(lambda m: f"{m[1]}{m[2] or ''}{REDACTED}", text)
    return text


def _userinfo(match: re.Match[str]) -> str:
    scheme, user, password = match[1], match[2], match[3]
    if password is not None:
        return f"{scheme}{user}:{REDACTED}@"
    return f"{scheme}{REDACTED}@"  # a lone user part is often a token (https://ghp_...@)


def _value(match: re.Match[str], key: int, value: int, everything: bool, quote: str = "") -> str:
    """The assignment with its value redacted if it is secret."""
    if REDACTED in match[value] or not (everything or re.search(_SENSITIVE_NAME, match[key], re.I)):
        return match[0]
    start = match.start(value) - match.start(0)
    end = match.end(value) - match.start(0)
    return match[0][:start] + REDACTED + match[0][end:]
