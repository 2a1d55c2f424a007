"""``scanfleet scan``: create a scan, follow it, summarise it."""

from __future__ import annotations

import shutil
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from contracts.errors import ConfigError
from contracts.scan import ScanEvent
from coordinator.budgets import BudgetPolicy
from coordinator.scope import Scope
from coordinator.settings import get_scan_settings
from storage.database import session_scope
from storage.findings import FindingFilter, list_findings
from storage.scans import ScanSummary, expected_events, scan_summary

FINAL_SCAN_STATES = ("completed", "partial", "failed", "cancelled")


def read_targets(targets: list[str], targets_file: Path | None) -> list[str]:
    collected = list(targets)
    if targets_file is not None:
        try:
            lines = targets_file.read_text().splitlines()
        except OSError as exc:
            raise ConfigError(f"cannot read targets file {targets_file}: {exc}") from exc
        collected += [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    if not collected:
        raise ConfigError("no targets: give TARGET arguments or --targets-file")
    return collected


def default_tools(embedded: bool) -> list[str]:
    tools = list(get_scan_settings().default_tools)
    if embedded and shutil.which("nmap") is None:
        tools = [t for t in tools if t != "nmap"]
    return tools


def wait_for_scan(
    database_url: str,
    scan_id: uuid.UUID,
    console: Console,
    *,
    show_progress: bool,
    timeout_s: float | None = None,
    poll: Callable[[], None] | None = None,
) -> ScanSummary:
    started = time.monotonic()
    progress = Progress(
        TextColumn("[bold]scan[/bold] {task.fields[status]}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} tasks"),
        TextColumn("running {task.fields[running]}  failed {task.fields[failed]}"),
        TextColumn("findings {task.fields[findings]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not show_progress,
        transient=False,
    )
    with progress:
        bar = progress.add_task("scan", total=1, status="running", running=0, failed=0, findings=0)
        while True:
            if poll:
                poll()
            with session_scope(database_url) as session:
                summary = scan_summary(session, scan_id)
                assert summary is not None
                expected = expected_events(session, scan_id)
            done = sum(
                v
                for k, v in summary.tasks.items()
                if k in ("succeeded", "failed", "timed_out", "cancelled")
            )
            failed = sum(v for k, v in summary.tasks.items() if k in ("failed", "timed_out"))
            progress.update(
                bar,
                total=max(summary.tasks_total, 1),
                completed=done,
                status=summary.status,
                running=summary.tasks.get("running", 0),
                failed=failed,
                findings=summary.findings,
            )
            # Ended, and every finding its tasks reported has been ingested.
            if summary.status in FINAL_SCAN_STATES and summary.events >= expected:
                return summary
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                return summary
            time.sleep(0.2)


def run_embedded(
    database_url: str,
    targets: list[str],
    tools: list[str],
    scope: Scope,
    console: Console,
    *,
    show_progress: bool,
    budgets: BudgetPolicy | None = None,
    options: dict[str, dict[str, Any]] | None = None,
) -> tuple[ScanSummary, list[str]]:
    """Run one scan with coordinator, workers and ingest in this process."""
    from coordinator.embedded import EmbeddedFleet
    from storage.artifacts import open_store
    from storage.migrate import upgrade
    from storage.settings import get_settings

    upgrade(database_url)
    fleet = EmbeddedFleet(database_url, open_store(get_settings().effective_artifact_url), scope)
    fleet.start()
    try:
        result = fleet.submit(targets, tools, budgets=budgets, target_list=targets, options=options)
        summary = wait_for_scan(database_url, result.scan_id, console, show_progress=show_progress)
    finally:
        fleet.stop()
    return summary, result.refusals


def summary_json(database_url: str, summary: ScanSummary, refusals: list[str]) -> dict[str, Any]:
    from storage.scans import list_tasks

    with session_scope(database_url) as session:
        findings = list_findings(session, FindingFilter(scan_id=str(summary.id)), limit=100000)
        tasks = list_tasks(session, summary.id)
        return {
            "scan": summary.to_json(),
            "refusals": refusals,
            "tasks": [task_json(t) for t in tasks],
            "findings": [f.to_json() for f in findings],
        }


def task_json(task: Any) -> dict[str, Any]:
    return {
        "id": str(task.id),
        "target": task.target,
        "tool": task.tool,
        "pool": task.pool,
        "state": task.status,
        "attempts": task.attempts,
        "started_at": task.started_at.isoformat() if task.started_at else None,
        "finished_at": task.finished_at.isoformat() if task.finished_at else None,
        "exit_code": task.exit_code,
        "reason": task.reason,
        "findings": task.findings_count,
        "tool_version": task.tool_version,
        "argv": task.argv,
        "artifact_ref": task.artifact_ref,
        "config_hash": task.config_hash,
        "options": task.options,
        "worker": task.worker,
        "last_error": task.last_error,
        "target_key": task.target_key,
        "budget_class": task.budget_class,
        "max_concurrency": task.max_concurrency,
        "rps": task.rps,
        "rps_allocated": task.rps_allocated,
        "max_runtime_s": task.max_runtime_s,
        "cancel_requested": task.cancel_requested,
        "scan_id": str(task.scan_id),
    }


def print_summary(console: Console, data: dict[str, Any]) -> None:
    scan = data["scan"]
    console.print(
        f"scan [bold]{scan['id']}[/bold]: [bold]{scan['status']}[/bold], "
        f"{sum(scan['tasks'].values())} task(s), {len(data['findings'])} finding(s)"
    )
    per_tool: dict[str, int] = {}
    for task in data["tasks"]:
        per_tool[task["tool"]] = per_tool.get(task["tool"], 0) + (task["findings"] or 0)
    if per_tool:
        console.print(
            "reported by tool: " + ", ".join(f"{k} {v}" for k, v in sorted(per_tool.items()))
        )
    for refusal in data["refusals"]:
        console.print(f"[yellow]refused[/yellow] {refusal}")
    failed = [t for t in data["tasks"] if t["state"] not in ("succeeded",)]
    for task in failed:
        console.print(
            f"[red]{task['state']}[/red] {task['tool']} on {task['target']}: {task['reason']}"
        )
    table = Table(title="findings")
    for column in ("severity", "asset", "port", "kind", "rule", "title"):
        table.add_column(column)
    order = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}
    for f in sorted(
        data["findings"], key=lambda f: (order[f["severity"]], f["asset"], f["port"] or 0)
    ):
        table.add_row(
            f["severity"],
            f["asset"],
            "" if f["port"] is None else str(f["port"]),
            f["kind"],
            f["rule_id"],
            f["title"],
        )
    console.print(table)


def exit_code(status: str) -> int:
    return 0 if status in ("completed", "partial") else 1


def scope_from(options: list[str] | None) -> Scope:
    return Scope.parse(options or get_scan_settings().scope_entries())


def is_terminal() -> bool:
    return sys.stdout.isatty()


def who() -> str:
    """Who asked, for the scan's record and the audit trail."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def send_scan_event(broker_url: str, event: ScanEvent) -> None:
    """Publish a scan's end event from the CLI (the coordinator's way, with a confirm)."""
    import pika

    from coordinator.service import declare, publish_scan_event
    from ingest.topology import connection_parameters

    connection = pika.BlockingConnection(connection_parameters(broker_url))
    try:
        channel = connection.channel()
        declare(channel)
        channel.confirm_delivery()
        publish_scan_event(channel, event)
    finally:
        connection.close()


def tool_options(ports: str | None, entries: list[str]) -> dict[str, dict[str, Any]] | None:
    """``--ports`` and ``--tool-option TOOL.KEY=VALUE`` (VALUE read as JSON when it is)."""
    import json

    options: dict[str, dict[str, Any]] = {}
    if ports:
        options = {"nmap": {"ports": ports}, "tcp-ports": {"ports": ports}}
    for entry in entries:
        name, sep, raw = entry.partition("=")
        tool, dot, key = name.partition(".")
        if not sep or not dot or not tool or not key:
            raise ConfigError(f"--tool-option {entry!r}: expected TOOL.KEY=VALUE")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        options.setdefault(tool, {})[key] = value
    return options or None
