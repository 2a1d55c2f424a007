"""The sensitive paths http-exposure probes, and how each exposure is confirmed.

Every probe has its own rule id, a severity, and a content check run on the (redacted)
response body: a 200 answer alone proves nothing (many sites answer 200 to any path), so a
probe only becomes a finding when its body looks like the file it is named after: a git
ref in ``.git/HEAD``, ``KEY=value`` lines in ``.env``, a zip or gzip magic number in a
backup, "Index of /" in a directory listing.

Checks see the body after :func:`~workers.tools.redaction.redact_text` with the probe's
:class:`~workers.tools.redaction.BodySecrets` mode, so they are written against redacted
text (``DB_PASSWORD=[REDACTED]``), exactly as recorded.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from contracts.enums import Confidence, Severity
from workers.tools.redaction import REDACTED, BodySecrets

_ALL = BodySecrets.ALL_VALUES
_ROWS = BodySecrets.DATA_ROWS


@dataclass(frozen=True)
class Body:
    """A response body as checks see it."""

    #: The redacted text ("" for a binary body).
    text: str
    #: The first bytes of a binary body (empty for text).
    data: bytes = b""

    @property
    def binary(self) -> bool:
        return bool(self.data)

    @property
    def html(self) -> bool:
        head = self.text[:1024].lstrip().lower()
        return head.startswith(("<!doctype html", "<html")) or "<body" in head


Check = Callable[[Body], bool]


def contains(*markers: str, case: bool = True) -> Check:
    """Every marker occurs in the text."""
    if case:
        return lambda body: all(marker in body.text for marker in markers)
    lowered = [marker.lower() for marker in markers]
    return lambda body: all(marker in body.text.lower() for marker in lowered)


def matches(pattern: str, flags: int = 0) -> Check:
    regex = re.compile(pattern, flags)
    return lambda body: regex.search(body.text) is not None


def magic(*prefixes: bytes) -> Check:
    """A binary body starting with one of the file-format signatures."""
    return lambda body: body.data.startswith(prefixes)


def not_html(check: Check) -> Check:
    """``check`` holds and the body is not an HTML page (error pages are HTML)."""
    return lambda body: not body.binary and not body.html and check(body)


def either(*checks: Check) -> Check:
    return lambda body: any(check(body) for check in checks)


def both(*checks: Check) -> Check:
    return lambda body: all(check(body) for check in checks)


def json_object(*checks: Check) -> Check:
    """A JSON object (the body starts with ``{``) for which every check holds."""
    return lambda body: body.text.lstrip().startswith("{") and all(c(body) for c in checks)


_ASSIGNMENT_LINE = re.compile(r"^\s*(?:export\s+)?[A-Za-z_][A-Za-z0-9_.]*\s*=")


def _dotenv(body: Body) -> bool:
    """Mostly ``KEY=value`` lines (comments and blank lines aside)."""
    if body.binary or body.html:
        return False
    lines = [line for line in body.text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.lstrip().startswith("#")]
    assignments = sum(1 for line in lines if _ASSIGNMENT_LINE.match(line))
    return assignments >= 1 and assignments * 2 >= len(lines)


_SHELL_COMMAND = re.compile(
    r"^(?:sudo |cd |ls\b|ssh |scp |vi |vim |nano |cat |git |mysql|psql |export |rm |cp |mv |"
    r"docker |kubectl |curl |wget |apt|yum |systemctl |service |exit$|history$|php |python|"
    r"npm |composer |tail |less |grep |chmod |chown |mkdir |tar |unzip )"
)


def _shell_history(body: Body) -> bool:
    if body.binary or body.html:
        return False
    lines = [line.strip() for line in body.text.splitlines() if line.strip()]
    commands = sum(1 for line in lines if _SHELL_COMMAND.match(line))
    return commands >= 2 and commands * 2 >= len(lines)


_ZIP = magic(b"PK\x03\x04", b"PK\x05\x06")
_GZIP = magic(b"\x1f\x8b")
_SQL_DUMP = either(
    matches(r"(?m)^-- (?:MySQL dump|MariaDB dump|PostgreSQL database dump|Dump completed)"),
    matches(r"(?m)^-- (?:Host|Server version|Dumped from database version):"),
    matches(r"(?m)^(?:PRAGMA foreign_keys=OFF;|BEGIN TRANSACTION;)\s*$"),
    both(matches(r"(?mi)^CREATE TABLE\b"), matches(r"(?mi)^(?:DROP TABLE|SET |/\*!)")),
)
_PHP_SOURCE = not_html(matches(r"(?m)^\s*<\?php\b"))
_PRIVATE_KEY = matches(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
_WP_CONFIG = both(_PHP_SOURCE, matches(r"define\(\s*['\"]DB_(?:NAME|USER|PASSWORD|HOST)['\"]"))
_DIRECTORY_LISTING = either(
    matches(r"(?i)<title>\s*(?:Index of /|Directory listing for /)"),
    matches(r"(?i)<h1>\s*(?:Index of /|Directory listing for /)"),
    contains("[To Parent Directory]"),
)
_PHPINFO = either(
    matches(r"(?i)<title>[^<]*phpinfo\(\)\s*</title>"), contains('<h1 class="p">PHP Version')
)
_LOG_LINE_PHP = matches(r"(?m)^\[\d{2}-[A-Z][a-z]{2}-\d{4} \d{2}:\d{2}:\d{2}[^\]]*\] PHP ")
_LOG_LINE_LARAVEL = matches(r"(?m)^\[\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\] \w+\.[A-Z]+: ")


@dataclass(frozen=True)
class _Kind:
    """What probes of one kind share: why it matters and how to fix it."""

    cwe: str
    remediation: str
    reference: str


_WSTG = (
    "https://owasp.org/www-project-web-security-testing-guide/latest/"
    "4-Web_Application_Security_Testing/02-Configuration_and_Deployment_Management_Testing/"
)
_FILES_REFERENCE = _WSTG + "04-Review_Old_Backup_and_Unreferenced_Files_for_Sensitive_Information"
_ADMIN_REFERENCE = _WSTG + "05-Enumerate_Infrastructure_and_Application_Admin_Interfaces"

VCS = _Kind(
    "CWE-527",
    "Deploy an export of the code, not a working copy, or deny access to version-control "
    "directories (/.git/, /.svn/, /.hg/) in the web server; treat the history as disclosed.",
    _FILES_REFERENCE,
)
SECRETS = _Kind(
    "CWE-538",
    "Remove the file from the web root, deny access to dotfiles and configuration files in "
    "the web server, and rotate every credential the file held.",
    _FILES_REFERENCE,
)
BACKUP = _Kind(
    "CWE-530",
    "Remove backups, dumps and editor copies from the web root and keep them where the web "
    "server cannot serve them; deny *.bak, *~, *.swp, *.sql and archives.",
    _FILES_REFERENCE,
)
DEBUG = _Kind(
    "CWE-215",
    "Disable the debug endpoint in production, or bind it to an administration network "
    "and require authentication.",
    _ADMIN_REFERENCE,
)
STATUS = _Kind(
    "CWE-200",
    "Restrict the status or information page to localhost or an administration network.",
    _ADMIN_REFERENCE,
)
ADMIN = _Kind(
    "CWE-284",
    "Do not expose administration tools publicly: remove them, or restrict them by network "
    "and strong authentication.",
    _ADMIN_REFERENCE,
)
LISTING = _Kind(
    "CWE-548",
    "Disable directory listing (Apache: Options -Indexes; nginx: autoindex off; IIS: "
    "directoryBrowse enabled=false) and remove files that must not be public.",
    _FILES_REFERENCE,
)
LOGS = _Kind(
    "CWE-532",
    "Write logs outside the web root (or deny access to them) and review them for secrets.",
    _FILES_REFERENCE,
)


@dataclass(frozen=True)
class Probe:
    #: Path relative to the target URL's base (the directory of its path).
    path: str
    rule_id: str
    severity: Severity
    title: str
    kind: _Kind
    check: Check
    #: What the content check saw, for the finding's description.
    confirms: str
    secrets: BodySecrets = BodySecrets.GENERIC
    #: HIGH when the check is a file signature; MEDIUM for heuristics.
    confidence: Confidence = Confidence.HIGH


_C, _H, _M, _L = Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW

PROBES: tuple[Probe, ...] = (
    # Version control metadata.
    Probe(
        "/.git/HEAD",
        "exposed-git-metadata",
        _H,
        "Git repository metadata exposed (.git/HEAD)",
        VCS,
        not_html(matches(r"\A\s*(?:ref: refs/\S+|[0-9a-f]{40}|[0-9a-f]{64})\s*\Z")),
        "a git ref or commit id",
    ),
    Probe(
        "/.git/config",
        "exposed-git-config",
        _H,
        "Git repository configuration exposed",
        VCS,
        not_html(matches(r"(?m)^\[core\]\s*$")),
        "a [core] section",
    ),
    Probe(
        "/.svn/entries",
        "exposed-svn-metadata",
        _H,
        "Subversion working copy metadata exposed",
        VCS,
        not_html(matches(r"\A(?:\d+\s*\n|<\?xml[^>]*>\s*<wc-entries)")),
        "a Subversion entries file",
    ),
    Probe(
        "/.svn/wc.db",
        "exposed-svn-wc-db",
        _H,
        "Subversion working copy database exposed",
        VCS,
        magic(b"SQLite format 3\x00"),
        "an SQLite database signature",
    ),
    Probe(
        "/.hg/requires",
        "exposed-hg-metadata",
        _H,
        "Mercurial repository metadata exposed",
        VCS,
        not_html(matches(r"(?m)^(?:revlogv1|generaldelta|fncache|dotencode|store)$")),
        "Mercurial repository requirements",
    ),
    Probe(
        "/.bzr/branch-format",
        "exposed-bzr-metadata",
        _M,
        "Bazaar branch metadata exposed",
        VCS,
        contains("Bazaar"),
        "a Bazaar format marker",
    ),
    Probe(
        "/.DS_Store",
        "exposed-ds-store",
        _L,
        "macOS .DS_Store file exposed (lists file names)",
        VCS,
        magic(b"\x00\x00\x00\x01Bud1"),
        "the .DS_Store signature",
    ),
    # Secrets and configuration.
    Probe(
        "/.env",
        "exposed-dotenv",
        _C,
        "Environment file (.env) exposed",
        SECRETS,
        _dotenv,
        "KEY=value lines",
        _ALL,
    ),
    Probe(
        "/.env.production",
        "exposed-dotenv-production",
        _C,
        "Production environment file (.env.production) exposed",
        SECRETS,
        _dotenv,
        "KEY=value lines",
        _ALL,
    ),
    Probe(
        "/.aws/credentials",
        "exposed-aws-credentials",
        _C,
        "AWS credentials file exposed",
        SECRETS,
        not_html(both(matches(r"(?m)^\[[^\]\n]+\]\s*$"), contains("aws_access_key_id"))),
        "a profile with aws_access_key_id",
        _ALL,
    ),
    Probe(
        "/.npmrc",
        "exposed-npmrc",
        _H,
        "npm configuration (.npmrc) exposed",
        SECRETS,
        not_html(
            matches(
                r"(?m)^\s*(?:(?://\S+:)?_(?:auth|authToken|password)|registry|"
                r"always-auth|email)\s*="
            )
        ),
        "npm settings",
        _ALL,
    ),
    Probe(
        "/.dockercfg",
        "exposed-dockercfg",
        _H,
        "Docker registry credentials (.dockercfg) exposed",
        SECRETS,
        json_object(contains('"auth"')),
        "registry auth entries",
        _ALL,
    ),
    Probe(
        "/.docker/config.json",
        "exposed-docker-config",
        _H,
        "Docker client configuration (config.json) exposed",
        SECRETS,
        json_object(contains('"auths"')),
        "registry auth entries",
        _ALL,
    ),
    Probe(
        "/.git-credentials",
        "exposed-git-credentials",
        _C,
        "Git credential store exposed",
        SECRETS,
        not_html(matches(r"(?m)^https?://[^\s/@]+@\S+$")),
        "URLs with credentials",
        _ALL,
    ),
    Probe(
        "/.htpasswd",
        "exposed-htpasswd",
        _H,
        "Password file (.htpasswd) exposed",
        SECRETS,
        not_html(matches(rf"(?m)^[\w.@-]+:(?:\$[\w.]+\$|\{{S?SHA\}})?{re.escape(REDACTED)}$")),
        "user:hash lines",
        _ALL,
    ),
    Probe(
        "/.htaccess",
        "exposed-htaccess",
        _L,
        "Apache .htaccess file exposed",
        SECRETS,
        not_html(
            matches(
                r"(?im)^\s*(?:RewriteEngine|RewriteRule|RewriteCond|Options|Deny from|"
                r"Allow from|Require|AuthType|AuthUserFile|<IfModule|<Files|"
                r"ErrorDocument|Header)\b"
            )
        ),
        "Apache directives",
    ),
    Probe(
        "/.ssh/id_rsa",
        "exposed-ssh-private-key",
        _C,
        "SSH private key exposed (.ssh/id_rsa)",
        SECRETS,
        _PRIVATE_KEY,
        "a PEM private key",
    ),
    Probe(
        "/id_rsa",
        "exposed-private-key",
        _C,
        "Private key exposed (id_rsa)",
        SECRETS,
        _PRIVATE_KEY,
        "a PEM private key",
    ),
    Probe(
        "/.bash_history",
        "exposed-shell-history",
        _M,
        "Shell history (.bash_history) exposed",
        SECRETS,
        _shell_history,
        "shell command lines",
        confidence=Confidence.MEDIUM,
    ),
    Probe(
        "/wp-config.php.bak",
        "exposed-wp-config-backup",
        _C,
        "WordPress configuration backup exposed (wp-config.php.bak)",
        BACKUP,
        _WP_CONFIG,
        "PHP source defining DB_* settings",
        _ALL,
    ),
    Probe(
        "/wp-config.php~",
        "exposed-wp-config-editor-copy",
        _C,
        "WordPress configuration editor copy exposed (wp-config.php~)",
        BACKUP,
        _WP_CONFIG,
        "PHP source defining DB_* settings",
        _ALL,
    ),
    Probe(
        "/config.php.bak",
        "exposed-config-php-backup",
        _H,
        "PHP configuration backup exposed (config.php.bak)",
        BACKUP,
        _PHP_SOURCE,
        "PHP source code",
        _ALL,
    ),
    Probe(
        "/config.json",
        "exposed-config-json",
        _M,
        "Configuration file (config.json) exposed",
        SECRETS,
        json_object(
            matches(
                r'(?i)"[^"\n]*(?:pass|secret|token|api_?key|database|credential|'
                r'connection)[^"\n]*"\s*:'
            )
        ),
        "a JSON object with credential or database settings",
        _ALL,
        Confidence.MEDIUM,
    ),
    Probe(
        "/appsettings.json",
        "exposed-appsettings-json",
        _M,
        "ASP.NET configuration (appsettings.json) exposed",
        SECRETS,
        json_object(either(contains('"ConnectionStrings"'), contains('"Logging"'))),
        "ASP.NET settings sections",
        _ALL,
    ),
    Probe(
        "/WEB-INF/web.xml",
        "exposed-web-inf",
        _H,
        "Java web application descriptor exposed",
        SECRETS,
        contains("<web-app"),
        "a <web-app> descriptor",
        _ALL,
    ),
    Probe(
        "/docker-compose.yml",
        "exposed-docker-compose",
        _M,
        "docker-compose.yml exposed",
        SECRETS,
        not_html(matches(r"(?m)^services:\s*$")),
        "a services: section",
        _ALL,
    ),
    Probe(
        "/.vscode/sftp.json",
        "exposed-vscode-sftp",
        _H,
        "VS Code SFTP configuration exposed (.vscode/sftp.json)",
        SECRETS,
        json_object(
            contains('"host"'),
            either(contains('"password"'), contains('"privateKeyPath"'), contains('"username"')),
        ),
        "SFTP connection settings",
        _ALL,
    ),
    # Server status and information pages.
    Probe(
        "/server-status",
        "exposed-apache-server-status",
        _M,
        "Apache server-status exposed",
        STATUS,
        contains("Apache Server Status for"),
        "the Apache Server Status page",
    ),
    Probe(
        "/server-info",
        "exposed-apache-server-info",
        _M,
        "Apache server-info exposed",
        STATUS,
        contains("Apache Server Information"),
        "the Apache Server Information page",
    ),
    Probe(
        "/nginx_status",
        "exposed-nginx-status",
        _L,
        "nginx stub_status exposed",
        STATUS,
        contains("Active connections:", "server accepts handled requests"),
        "nginx stub_status counters",
    ),
    Probe(
        "/phpinfo.php",
        "exposed-phpinfo",
        _M,
        "phpinfo() page exposed (phpinfo.php)",
        STATUS,
        _PHPINFO,
        "phpinfo() output",
    ),
    Probe(
        "/info.php",
        "exposed-info-php",
        _M,
        "phpinfo() page exposed (info.php)",
        STATUS,
        _PHPINFO,
        "phpinfo() output",
    ),
    Probe(
        "/metrics",
        "exposed-prometheus-metrics",
        _L,
        "Prometheus metrics exposed",
        STATUS,
        both(
            matches(r"(?m)^# HELP \S+ "),
            matches(r"(?m)^# TYPE \S+ (?:counter|gauge|histogram|summary|untyped)$"),
        ),
        "Prometheus exposition format",
    ),
    # Backups, dumps and editor copies.
    Probe(
        "/backup.zip",
        "exposed-backup-zip",
        _H,
        "Backup archive exposed (backup.zip)",
        BACKUP,
        _ZIP,
        "a zip signature",
    ),
    Probe(
        "/backup.tar.gz",
        "exposed-backup-tar-gz",
        _H,
        "Backup archive exposed (backup.tar.gz)",
        BACKUP,
        _GZIP,
        "a gzip signature",
    ),
    Probe(
        "/site.tar.gz",
        "exposed-site-archive",
        _H,
        "Site archive exposed (site.tar.gz)",
        BACKUP,
        _GZIP,
        "a gzip signature",
    ),
    Probe(
        "/www.zip",
        "exposed-www-archive",
        _H,
        "Site archive exposed (www.zip)",
        BACKUP,
        _ZIP,
        "a zip signature",
    ),
    Probe(
        "/backup.sql",
        "exposed-backup-sql",
        _H,
        "Database dump exposed (backup.sql)",
        BACKUP,
        _SQL_DUMP,
        "SQL dump markers",
        _ROWS,
    ),
    Probe(
        "/db.sql",
        "exposed-db-sql",
        _H,
        "Database dump exposed (db.sql)",
        BACKUP,
        _SQL_DUMP,
        "SQL dump markers",
        _ROWS,
    ),
    Probe(
        "/dump.sql",
        "exposed-dump-sql",
        _H,
        "Database dump exposed (dump.sql)",
        BACKUP,
        _SQL_DUMP,
        "SQL dump markers",
        _ROWS,
    ),
    Probe(
        "/database.sql",
        "exposed-database-sql",
        _H,
        "Database dump exposed (database.sql)",
        BACKUP,
        _SQL_DUMP,
        "SQL dump markers",
        _ROWS,
    ),
    Probe(
        "/index.php~",
        "exposed-php-editor-copy",
        _M,
        "PHP source exposed (index.php~)",
        BACKUP,
        _PHP_SOURCE,
        "PHP source code",
        _ALL,
    ),
    Probe(
        "/index.php.bak",
        "exposed-php-backup",
        _M,
        "PHP source exposed (index.php.bak)",
        BACKUP,
        _PHP_SOURCE,
        "PHP source code",
        _ALL,
    ),
    Probe(
        "/.index.php.swp",
        "exposed-vim-swap",
        _M,
        "Vim swap file of PHP source exposed",
        BACKUP,
        magic(b"b0VIM"),
        "a Vim swap signature",
    ),
    # Debug endpoints.
    Probe(
        "/debug/pprof/",
        "exposed-go-pprof",
        _M,
        "Go pprof profiling endpoint exposed",
        DEBUG,
        either(contains("Types of profiles available"), contains("/debug/pprof/goroutine")),
        "the pprof index",
    ),
    Probe(
        "/_profiler/",
        "exposed-symfony-profiler",
        _H,
        "Symfony profiler exposed",
        DEBUG,
        contains("Symfony Profiler"),
        "the Symfony Profiler",
    ),
    Probe(
        "/actuator/env",
        "exposed-spring-actuator-env",
        _H,
        "Spring Boot actuator /env exposed",
        DEBUG,
        json_object(either(contains('"propertySources"'), contains('"activeProfiles"'))),
        "Spring environment property sources",
        _ALL,
    ),
    Probe(
        "/actuator/heapdump",
        "exposed-spring-heapdump",
        _C,
        "Spring Boot actuator heap dump exposed",
        DEBUG,
        either(magic(b"JAVA PROFILE "), _GZIP),
        "an HPROF heap dump signature",
    ),
    Probe(
        "/console",
        "exposed-debug-console",
        _H,
        "Interactive debug console exposed",
        DEBUG,
        either(
            contains("Werkzeug", "console"), contains("H2 Console"), contains("Interactive Console")
        ),
        "an interactive console",
    ),
    Probe(
        "/elmah.axd",
        "exposed-elmah",
        _H,
        "ELMAH error log exposed (elmah.axd)",
        DEBUG,
        contains("error log for", "elmah", case=False),
        "the ELMAH error log",
    ),
    Probe(
        "/trace.axd",
        "exposed-aspnet-trace",
        _M,
        "ASP.NET trace viewer exposed (trace.axd)",
        DEBUG,
        contains("Application Trace"),
        "the ASP.NET Application Trace",
    ),
    # Administration tools.
    Probe(
        "/phpmyadmin/",
        "exposed-phpmyadmin",
        _M,
        "phpMyAdmin exposed",
        ADMIN,
        matches(r"(?i)<title>[^<]*phpMyAdmin"),
        "the phpMyAdmin page",
    ),
    Probe(
        "/adminer.php",
        "exposed-adminer",
        _M,
        "Adminer database tool exposed",
        ADMIN,
        either(matches(r"(?i)<title>[^<]*Adminer"), contains("adminer.org")),
        "the Adminer page",
    ),
    # Directory listings.
    Probe(
        "/uploads/",
        "directory-listing-uploads",
        _M,
        "Directory listing enabled (/uploads/)",
        LISTING,
        _DIRECTORY_LISTING,
        "an 'Index of /' listing",
    ),
    Probe(
        "/backup/",
        "directory-listing-backup",
        _H,
        "Directory listing enabled (/backup/)",
        LISTING,
        _DIRECTORY_LISTING,
        "an 'Index of /' listing",
    ),
    Probe(
        "/backups/",
        "directory-listing-backups",
        _H,
        "Directory listing enabled (/backups/)",
        LISTING,
        _DIRECTORY_LISTING,
        "an 'Index of /' listing",
    ),
    Probe(
        "/logs/",
        "directory-listing-logs",
        _M,
        "Directory listing enabled (/logs/)",
        LISTING,
        _DIRECTORY_LISTING,
        "an 'Index of /' listing",
    ),
    # Logs.
    Probe(
        "/wp-content/debug.log",
        "exposed-wp-debug-log",
        _M,
        "WordPress debug log exposed",
        LOGS,
        not_html(_LOG_LINE_PHP),
        "PHP error log lines",
    ),
    Probe(
        "/storage/logs/laravel.log",
        "exposed-laravel-log",
        _M,
        "Laravel log exposed",
        LOGS,
        not_html(_LOG_LINE_LARAVEL),
        "Laravel log lines",
    ),
)

PROBES_BY_PATH: dict[str, Probe] = {probe.path: probe for probe in PROBES}
