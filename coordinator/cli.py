"""The ``scanfleet`` command line."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from contracts.enums import Severity
from contracts.errors import ConfigError, ScanfleetError

if TYPE_CHECKING:
    from storage.findings import FindingFilter

app = typer.Typer(
    name="scanfleet",
    help="Distributed security scanning: scans, workers, ingest and findings.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema management.", no_args_is_help=True)
findings_app = typer.Typer(help="Query deduplicated findings.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(findings_app, name="findings")

console = Console()
err_console = Console(stderr=True)


def _database_url() -> str:
    from storage.settings import get_settings

    return get_settings().effective_database_url


def _print_json(value: object) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision")] = "head",
) -> None:
    """Apply Alembic migrations up to REVISION (the only way the schema changes)."""
    from storage.migrate import current_revision, upgrade

    url = _database_url()
    upgrade(url, revision)
    console.print(f"database at revision [bold]{current_revision(url)}[/bold]")


@db_app.command("current")
def db_current() -> None:
    """Show the schema revision of the configured database."""
    from storage.migrate import current_revision, head_revision

    url = _database_url()
    console.print(f"current: {current_revision(url) or 'none'}  head: {head_revision(url)}")


@app.command("ingest")
def ingest(
    consumers: Annotated[
        int | None, typer.Option(help="Consumer processes (SCANFLEET_INGEST_CONSUMERS)")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Events per batch (SCANFLEET_INGEST_BATCH_SIZE)")
    ] = None,
    metrics_port: Annotated[int | None, typer.Option(help="Port of /metrics, 0 to disable")] = None,
) -> None:
    """Consume finding events from RabbitMQ and persist deduplicated findings."""
    from ingest.service import Supervisor, check_configuration
    from ingest.settings import get_broker_settings, get_ingest_settings
    from observability.logging import configure_logging
    from storage.settings import get_settings

    settings = get_ingest_settings()
    overrides = {
        k: v
        for k, v in {
            "consumers": consumers,
            "batch_size": batch_size,
            "metrics_port": metrics_port,
        }.items()
        if v is not None
    }
    settings = settings.model_validate({**settings.model_dump(), **overrides})
    configure_logging(settings.log_level)
    database_url = check_configuration(get_broker_settings(), get_settings())
    # Consumers are spawned and read their settings from the environment.
    import os

    for key, value in overrides.items():
        os.environ[f"SCANFLEET_INGEST_{key.upper()}"] = str(value)
    raise typer.Exit(Supervisor(settings, database_url).run())


def _filter(
    severity: list[Severity] | None,
    kind: list[str] | None,
    status: list[str] | None,
    asset: str | None,
    scan: str | None,
) -> FindingFilter:
    from storage.findings import FindingFilter

    return FindingFilter(
        severities=severity or (),
        kinds=kind or (),
        statuses=status or (),
        asset=asset,
        scan_id=scan,
    )


SeverityOpt = Annotated[list[Severity] | None, typer.Option("--severity", help="Repeatable")]
KindOpt = Annotated[list[str] | None, typer.Option("--kind", help="Repeatable")]
StatusOpt = Annotated[list[str] | None, typer.Option("--status", help="open or fixed")]
AssetOpt = Annotated[str | None, typer.Option("--asset", help="Host name or IP")]
ScanOpt = Annotated[str | None, typer.Option("--scan", help="Only findings seen in this scan")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output")]


@findings_app.command("list")
def findings_list(
    severity: SeverityOpt = None,
    kind: KindOpt = None,
    status: StatusOpt = None,
    asset: AssetOpt = None,
    scan: ScanOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=100000)] = 100,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: JsonOpt = False,
) -> None:
    """List findings, most recently seen first."""
    from storage.database import session_scope
    from storage.findings import list_findings

    with session_scope(_database_url()) as session:
        rows = list_findings(
            session, _filter(severity, kind, status, asset, scan), limit=limit, offset=offset
        )
    if as_json:
        _print_json([row.to_json() for row in rows])
        return
    table = Table(title=f"{len(rows)} finding(s)")
    for column in ("severity", "asset", "port", "kind", "rule", "title", "status", "last seen"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.severity,
            row.asset,
            "" if row.port is None else str(row.port),
            row.kind,
            row.rule_id,
            row.title,
            row.status,
            row.last_seen.isoformat(timespec="seconds"),
        )
    console.print(table)


@findings_app.command("count")
def findings_count(
    severity: SeverityOpt = None,
    kind: KindOpt = None,
    status: StatusOpt = None,
    asset: AssetOpt = None,
    scan: ScanOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Count findings, by severity and by status."""
    from storage.database import session_scope
    from storage.findings import count_findings

    with session_scope(_database_url()) as session:
        counts = count_findings(session, _filter(severity, kind, status, asset, scan))
    if as_json:
        _print_json(counts.to_json())
        return
    table = Table(title=f"{counts.total} finding(s), {counts.observations} observation(s)")
    table.add_column("severity")
    table.add_column("findings", justify="right")
    for name, value in counts.by_severity.items():
        table.add_row(name, str(value))
    console.print(table)


def main() -> None:
    try:
        app()
    except ConfigError as exc:
        err_console.print(f"[red]configuration error:[/red] {exc}")
        sys.exit(2)
    except ScanfleetError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        sys.exit(1)


if __name__ == "__main__":
    main()
