"""The ``scanfleet`` command line."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

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
scans_app = typer.Typer(help="Scans and their state.", no_args_is_help=True)
tasks_app = typer.Typer(help="Tasks of a scan.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(findings_app, name="findings")
app.add_typer(scans_app, name="scans")
app.add_typer(tasks_app, name="tasks")
dlq_app = typer.Typer(help="Dead-lettered messages.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")


class _ScanGroup(TyperGroup):
    """``scanfleet scan TARGET...`` runs a scan; ``scanfleet scan cancel ID`` cancels one."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args or args[0] not in self.commands:
            args = ["run", *args]
        return super().parse_args(ctx, args)


scan_app = typer.Typer(
    cls=_ScanGroup,
    help="Run a scan (scanfleet scan TARGET...) or cancel one (scanfleet scan cancel ID).",
)
app.add_typer(scan_app, name="scan")

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
    from ingest.service import Supervisor, check_configuration, check_topology
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
    check_topology(get_broker_settings(), settings)
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


def _broker_url() -> str | None:
    from ingest.settings import get_broker_settings

    return get_broker_settings().broker_url


def _parse_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise ConfigError(f"not an id: {value!r}") from exc


@scan_app.command("run")
def scan(
    targets: Annotated[
        list[str] | None, typer.Argument(help="IPs, CIDRs, host names, URLs")
    ] = None,
    tools: Annotated[str | None, typer.Option(help="Comma-separated tools")] = None,
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="Allowed CIDR/host/*.domain; repeatable")
    ] = None,
    targets_file: Annotated[Path | None, typer.Option(help="One target per line")] = None,
    wait: Annotated[bool | None, typer.Option("--wait/--no-wait", help="Follow the scan")] = None,
    as_json: JsonOpt = False,
    ports: Annotated[
        str | None, typer.Option(help="Ports for nmap and tcp-ports, e.g. 22,80,8000-8100")
    ] = None,
    profile: Annotated[
        str | None, typer.Option(help="Budget profile: default, gentle, fast or a configured one")
    ] = None,
    max_concurrency: Annotated[
        int | None, typer.Option(min=1, max=1024, help="Tasks at once per target")
    ] = None,
    rps: Annotated[
        float | None, typer.Option(min=0.001, help="Requests per second per target (all tasks)")
    ] = None,
    max_runtime: Annotated[
        int | None, typer.Option("--max-runtime", "--time-limit", min=1, help="Seconds per task")
    ] = None,
    max_wall: Annotated[
        int | None, typer.Option("--max-wall", min=1, help="Seconds for the whole scan")
    ] = None,
    tool_option: Annotated[
        list[str] | None,
        typer.Option("--tool-option", help="TOOL.KEY=VALUE, e.g. nmap.top_ports=50; repeatable"),
    ] = None,
) -> None:
    """Scan TARGETs: plan target x tool, check scope, run within budgets, summarise findings."""
    from contracts.scan import BudgetOverride
    from coordinator import scan_command as sc
    from coordinator.settings import get_scan_settings
    from observability.logging import configure_logging

    configure_logging("WARNING")
    target_list = sc.read_targets(targets or [], targets_file)
    scope_value = sc.scope_from(scope)
    broker_url = _broker_url()
    embedded = broker_url is None
    tool_list = [t.strip() for t in tools.split(",") if t.strip()] if tools else None
    tool_list = tool_list or sc.default_tools(embedded)
    out = Console(stderr=True)
    follow = sc.is_terminal() if wait is None else wait
    database_url = _database_url()
    options = sc.tool_options(ports, tool_option or [])
    budgets = get_scan_settings().budget_policy(
        profile,
        BudgetOverride(
            max_concurrency=max_concurrency,
            rps=rps,
            max_runtime_s=max_runtime,
            max_scan_wall_s=max_wall,
        ),
    )
    if embedded:
        summary, refusals = sc.run_embedded(
            database_url,
            target_list,
            tool_list,
            scope_value,
            out,
            show_progress=follow and not as_json,
            budgets=budgets,
            options=options,
        )
        tasks_created = summary.tasks_total
    else:
        from coordinator.dispatch import dispatch
        from coordinator.publisher import WindowedTaskPublisher

        assert broker_url is not None
        publisher = WindowedTaskPublisher(broker_url)
        publish = publisher.publish

        result = dispatch(
            database_url,
            target_list,
            tool_list,
            scope_value,
            publish,
            budgets=budgets,
            target_list=target_list,
            options=options,
            requested_by=sc.who(),
        )
        publisher.close()
        if not follow:
            if as_json:
                _print_json(
                    {
                        "scan_id": str(result.scan_id),
                        "tasks": result.tasks,
                        "refusals": result.refusals,
                    }
                )
            else:
                console.print(f"scan {result.scan_id}: {result.tasks} task(s) queued")
                for refusal in result.refusals:
                    console.print(f"[yellow]refused[/yellow] {refusal}")
            return
        summary = sc.wait_for_scan(database_url, result.scan_id, out, show_progress=not as_json)
        refusals, tasks_created = result.refusals, result.tasks
    data = sc.summary_json(database_url, summary, refusals)
    if as_json:
        _print_json(data)
    else:
        sc.print_summary(console, data)
    if tasks_created == 0 and refusals:
        raise typer.Exit(2)
    raise typer.Exit(sc.exit_code(summary.status))


@scan_app.command("cancel")
def scan_cancel(
    scan_id: Annotated[str, typer.Argument(help="The scan to cancel")],
    as_json: JsonOpt = False,
) -> None:
    """Cancel a scan: queued tasks never run, running tools are stopped within seconds."""
    from coordinator import scan_command as sc
    from coordinator.lifecycle import cancel_scan

    result = cancel_scan(_database_url(), _parse_id(scan_id), by=sc.who())
    if not result.found:
        raise ConfigError(f"no scan {scan_id}")
    if result.scan_event is not None and _broker_url():
        sc.send_scan_event(str(_broker_url()), result.scan_event)
    data = {
        "scan_id": scan_id,
        "status": result.status,
        "cancelled_tasks": result.cancelled,
        "stopping_tasks": result.stopping,
    }
    if as_json:
        _print_json(data)
        return
    console.print(
        f"scan {scan_id}: {result.status}; {result.cancelled} queued task(s) cancelled, "
        f"{result.stopping} running task(s) stopping"
    )


@app.command("demo")
def demo(as_json: JsonOpt = False) -> None:
    """Start weak services on loopback, scan them with the embedded fleet, show findings."""
    from contracts.scan import BudgetOverride
    from coordinator import scan_command as sc
    from coordinator.demo import demo_services
    from coordinator.scope import LOOPBACK_SCOPE, Scope
    from coordinator.settings import get_scan_settings
    from observability.logging import configure_logging
    from storage.settings import StorageSettings

    configure_logging("WARNING")
    # The demo always runs embedded, on the default SQLite database.
    database_url = StorageSettings(database_url=None).effective_database_url
    out = Console(stderr=True)
    with demo_services() as services:
        if not as_json:
            console.print(
                f"demo services: {services.http_url} (no security headers, exposed .git), "
                f"{services.https_url} (expired self-signed certificate), "
                f"127.0.0.1:{services.extra_port} (extra open port)"
            )
        ports = services.ports
        summary, refusals = sc.run_embedded(
            database_url,
            services.targets,
            sc.default_tools(embedded=True),
            Scope.parse(LOOPBACK_SCOPE),
            out,
            show_progress=not as_json,
            budgets=get_scan_settings().budget_policy(None, BudgetOverride(max_runtime_s=120)),
            options={"nmap": {"ports": ports}, "tcp-ports": {"ports": ports}},
        )
    data = sc.summary_json(database_url, summary, refusals)
    if as_json:
        _print_json(data)
    else:
        sc.print_summary(console, data)
    raise typer.Exit(sc.exit_code(summary.status))


@scans_app.command("list")
def scans_list(
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50, as_json: JsonOpt = False
) -> None:
    """Recent scans, newest first."""
    from storage.database import session_scope
    from storage.scans import list_scans

    with session_scope(_database_url()) as session:
        rows = list_scans(session, limit)
    if as_json:
        _print_json([r.to_json() for r in rows])
        return
    table = Table(title=f"{len(rows)} scan(s)")
    for column in ("id", "status", "origin", "tasks", "findings", "created"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            str(r.id),
            r.status,
            r.origin,
            str(r.tasks_total),
            str(r.findings),
            r.created_at.isoformat(timespec="seconds"),
        )
    console.print(table)


@scans_app.command("show")
def scans_show(scan_id: str, as_json: JsonOpt = False) -> None:
    """One scan: state, tasks by state, tool versions, config hash, refusals."""
    from storage.database import session_scope
    from storage.scans import scan_summary

    with session_scope(_database_url()) as session:
        summary = scan_summary(session, _parse_id(scan_id))
    if summary is None:
        raise ConfigError(f"no scan {scan_id}")
    if as_json:
        _print_json(summary.to_json())
        return
    for key, value in summary.to_json().items():
        console.print(f"[bold]{key}[/bold]: {value}")


@tasks_app.command("list")
def tasks_list(
    scan: Annotated[str, typer.Option("--scan", help="Scan id")], as_json: JsonOpt = False
) -> None:
    """The tasks of a scan with target, tool, state, attempts, times and exit status."""
    from coordinator.scan_command import task_json
    from storage.database import session_scope
    from storage.scans import list_tasks

    with session_scope(_database_url()) as session:
        rows = [task_json(t) for t in list_tasks(session, _parse_id(scan))]
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"{len(rows)} task(s)")
    columns = ("target", "tool", "state", "attempts", "started", "finished", "exit", "reason")
    for column in (*columns, "last error"):
        table.add_column(column)
    for t in rows:
        table.add_row(
            t["target"],
            t["tool"],
            t["state"],
            str(t["attempts"]),
            t["started_at"] or "",
            t["finished_at"] or "",
            "" if t["exit_code"] is None else str(t["exit_code"]),
            t["reason"] or "",
            t["last_error"] or "",
        )
    console.print(table)


@tasks_app.command("show")
def tasks_show(task_id: str, as_json: JsonOpt = False) -> None:
    """One task: the exact argument list it ran, its tool version, config hash, artifact."""
    from coordinator.scan_command import task_json
    from storage.database import session_scope
    from storage.models import Task

    with session_scope(_database_url()) as session:
        task = session.get(Task, _parse_id(task_id))
        if task is None:
            raise ConfigError(f"no task {task_id}")
        data = task_json(task)
    if as_json:
        _print_json(data)
        return
    for key, value in data.items():
        console.print(f"[bold]{key}[/bold]: {value}")


@app.command("worker")
def worker(
    pool: Annotated[list[str] | None, typer.Option("--pool", help="Repeatable")] = None,
    budget_class: Annotated[
        list[str] | None,
        typer.Option("--budget-class", help="standard or slow; repeatable (default both)"),
    ] = None,
    threads: Annotated[int, typer.Option(min=1, max=256)] = 4,
) -> None:
    """Run tasks from RabbitMQ (dramatiq) with the tools installed here.

    SIGTERM: stop taking tasks, let running ones finish for SCANFLEET_WORKER_GRACE_S,
    then stop the rest and hand them back (they run again elsewhere).
    """
    import signal
    import threading
    import time

    import dramatiq
    import structlog

    from coordinator.budgets import BUDGET_CLASSES
    from coordinator.transport import POOLS, queues, rabbitmq_broker, task_queue
    from ingest.settings import get_broker_settings
    from observability.logging import configure_logging
    from storage.artifacts import open_store
    from storage.settings import get_settings
    from workers.actors import register_actors
    from workers.events import RabbitSink
    from workers.execute import WORKER_ID
    from workers.lease import LeaseKeeper
    from workers.runner import TaskRunner
    from workers.tools.registry import available_tools

    configure_logging("INFO")
    broker_url = _broker_url()
    if not broker_url:
        raise ConfigError("scanfleet worker needs SCANFLEET_BROKER_URL (amqp://...)")
    from coordinator import scan_command as sc
    from coordinator.settings import get_scan_settings

    settings = get_scan_settings()
    unknown = set(budget_class or ()) - set(BUDGET_CLASSES)
    if unknown:
        raise ConfigError(f"unknown budget class(es) {sorted(unknown)}; known: {BUDGET_CLASSES}")
    consumed = queues(pool or list(POOLS), budget_class or list(BUDGET_CLASSES))
    broker = rabbitmq_broker(broker_url)
    dramatiq.set_broker(broker)
    sink = RabbitSink(
        broker_url, get_broker_settings().findings_exchange, settings.task_exchange_events
    )
    keeper = LeaseKeeper(
        _database_url(),
        WORKER_ID,
        lease_ttl_s=settings.lease_ttl_s,
        heartbeat_s=settings.heartbeat_s,
    )
    runner = TaskRunner(
        sink=sink,
        artifacts=open_store(get_settings().effective_artifact_url),
        scope=sc.scope_from(None),
        keeper=keeper,
    )
    register_actors(broker, runner, consumed)
    log = structlog.get_logger("scanfleet.worker")
    log.info(
        "worker_started",
        worker=WORKER_ID,
        queues=[task_queue(p, c) for p, c in consumed],
        threads=threads,
        tools=available_tools(),
    )
    dramatiq_worker = dramatiq.Worker(
        broker, queues={task_queue(p, c) for p, c in consumed}, worker_threads=threads
    )
    # Per queue, a worker holds no more messages than it has threads. One it cannot start
    # at once waits unacked at most one task's runtime, which the consumer timeout covers
    # (see ScanSettings.max_task_runtime_s).
    dramatiq_worker.queue_prefetch = threads
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    keeper.start()
    dramatiq_worker.start()
    stop.wait()
    runner.drain()
    # Take no more messages; the running tasks go on (their acks still flow).
    for consumer in dramatiq_worker.consumers.values():
        consumer.pause()
    log.info("worker_draining", running=keeper.running(), grace_s=settings.worker_grace_s)
    deadline = time.monotonic() + settings.worker_grace_s
    while keeper.running() and time.monotonic() < deadline:
        time.sleep(0.2)
    if keeper.running():
        log.warning("worker_handing_back", running=keeper.running())
        runner.hand_back_running()
    dramatiq_worker.stop(timeout=30_000)
    keeper.close()
    broker.close()
    log.info("worker_stopped")


@app.command("coordinator")
def coordinator_service() -> None:
    """Consume task events; move tasks and scans to their end states."""
    from coordinator.service import serve
    from observability.logging import configure_logging

    configure_logging("INFO")
    broker_url = _broker_url()
    database_url = _database_url()
    if not broker_url:
        raise ConfigError("scanfleet coordinator needs SCANFLEET_BROKER_URL (amqp://...)")
    serve(broker_url, database_url)


def _dead_letter_queues() -> tuple[str, list[Any]]:
    from coordinator.deadletters import known_queues
    from ingest.settings import get_broker_settings, get_ingest_settings

    broker_url = _broker_url()
    if not broker_url:
        raise ConfigError("dead-letter queues live in RabbitMQ: set SCANFLEET_BROKER_URL")
    queues = known_queues(get_broker_settings().findings_exchange, get_ingest_settings().queue)
    return broker_url, queues


@dlq_app.command("list")
def dlq_list(
    limit: Annotated[int, typer.Option(min=1, max=10000, help="Per queue")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Dead-lettered messages of every queue, with the reason each was dead-lettered."""
    from coordinator.deadletters import list_dead_letters

    broker_url, queues = _dead_letter_queues()
    letters = list_dead_letters(broker_url, queues, limit)
    if as_json:
        _print_json([letter.to_json() for letter in letters])
        return
    table = Table(title=f"{len(letters)} dead-lettered message(s)")
    for column in ("queue", "routing key", "reason", "bytes"):
        table.add_column(column)
    for letter in letters:
        table.add_row(letter.queue, letter.routing_key, letter.reason, str(letter.size))
    console.print(table)


@dlq_app.command("retry")
def dlq_retry(
    queue: Annotated[str, typer.Argument(help="A dead-letter queue, e.g. scanfleet.ingest.dlq")],
    count: Annotated[
        int | None, typer.Option(min=1, help="At most this many (default all)")
    ] = None,
) -> None:
    """Send dead-lettered messages back where they came from (with publisher confirms)."""
    from coordinator.deadletters import retry_dead_letters

    broker_url, queues = _dead_letter_queues()
    moved = retry_dead_letters(broker_url, queues, queue, count)
    console.print(f"{moved} message(s) sent back from {queue}")


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
