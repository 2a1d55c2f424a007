"""Creating a scan: plan target x tool, check scope, persist, admit within budgets, publish.

The plan is streamed: targets are parsed, expanded and checked one at a time and
tasks are persisted in chunks, so memory stays flat in the number of targets. Each
chunk's tasks get the leases their targets' budgets allow at once and those are
published; the rest wait in PostgreSQL until the coordinator admits them as slots free
up. Every refusal is recorded on the scan with the rule that refused it.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import structlog
from sqlalchemy.orm import Session

from contracts.errors import ConfigError, TransientError
from contracts.task import TaskMessage
from coordinator.admission import publish_grants
from coordinator.budgets import BudgetPolicy
from coordinator.scope import Scope
from coordinator.settings import get_scan_settings
from coordinator.targets import ParsedTarget, TargetRefused, parse_target
from storage.leases import admit_new, leased_session
from storage.models import Scan
from storage.scans import (
    NewTask,
    add_tasks,
    create_scan,
    mark_dispatched,
    record_refusals,
    task_rows,
)
from workers.tools.registry import tools

log = structlog.get_logger("scanfleet.coordinator")

CHUNK = 1000


def pool_of(tool: str) -> str:
    """The worker pool whose queues carry the tool's tasks (its plugin says)."""
    plugin = tools().get(tool)
    return plugin.pool if plugin is not None else "default"


def applies(tool: str, target: ParsedTarget) -> bool:
    """Whether the tool runs against this target (its plugin says; an unknown tool is
    planned for hosts, and its task fails on the worker naming the known tools)."""
    plugin = tools().get(tool)
    if plugin is None:
        return target.url is None
    return plugin.accepts(url=target.url, port=target.port)


@dataclass
class DispatchResult:
    scan_id: uuid.UUID
    tasks: int = 0
    admitted: int = 0
    refusals: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Planned:
    target: ParsedTarget
    #: The addresses the scope check resolved the target to (empty for an allowed name).
    addresses: tuple[str, ...]
    tool: str

    @property
    def target_key(self) -> str:
        """A budget is per machine: its IP, else the address its name resolved to."""
        return (
            self.target.ip
            or (self.addresses[0] if self.addresses else None)
            or self.target.host
            or ""
        ).lower()


def plan(
    targets: Iterable[str], tools: list[str], scope: Scope, refusals: list[str]
) -> Iterator[Planned]:
    for raw in targets:
        try:
            for target in parse_target(raw):
                checked = tuple(scope.check(target))
                for tool in tools:
                    if applies(tool, target):
                        yield Planned(target, checked, tool)
        except TargetRefused as exc:
            refusals.append(str(exc))
            log.warning("target_refused", target=raw[:200], rule=exc.rule, detail=exc.detail)


def effective_config_hash(
    tools: list[str], options: dict[str, Any], scope: Scope, budgets: BudgetPolicy
) -> str:
    """The effective configuration, hashed: two scans with the same hash ran the same way."""
    config = {
        "tools": sorted(tools),
        "options": options,
        "scope": scope.describe(),
        "budget": budgets.describe(),
    }
    return hashlib.sha256(orjson.dumps(config, option=orjson.OPT_SORT_KEYS)).hexdigest()


def check_runtime(budgets: BudgetPolicy) -> None:
    limit = get_scan_settings().max_task_runtime_s
    if budgets.base.max_runtime_s > limit:
        raise ConfigError(
            f"max runtime {budgets.base.max_runtime_s}s is above {limit}s, the most the "
            "broker's consumer timeout allows (SCANFLEET_BROKER_CONSUMER_TIMEOUT_S: a task "
            "may wait one runtime for a worker thread, then run one, unacked)"
        )


def dispatch(
    database_url: str,
    targets: Iterable[str],
    tools: list[str],
    scope: Scope,
    publish: Callable[[Sequence[TaskMessage]], None],
    *,
    budgets: BudgetPolicy | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    scan_id: uuid.UUID | None = None,
    target_list: list[str] | None = None,
    requested_by: str | None = None,
) -> DispatchResult:
    budgets = budgets or get_scan_settings().budget_policy()
    check_runtime(budgets)
    result = DispatchResult(scan_id or uuid.uuid4())
    created = False

    def new_scan(session: Session) -> Scan:
        return create_scan(
            session,
            result.scan_id,
            targets=target_list or [],
            tools=tools,
            profile=budgets.profile,
            requested_by=requested_by,
            config_hash=effective_config_hash(tools, options or {}, scope, budgets),
            budget=budgets.describe(),
            max_wall_s=budgets.base.max_scan_wall_s,
        )

    def flush(chunk: list[NewTask], last: bool) -> None:
        """One transaction per chunk: the first also creates the scan, the last marks it
        dispatched (a one-task scan takes one transaction); then the grants are published."""
        nonlocal created
        rows = task_rows(result.scan_id, chunk)
        grants = []
        with leased_session(database_url) as session:
            fresh = None
            if not created:
                fresh = new_scan(session)
                created = True
            if rows:
                grants = admit_new(
                    session,
                    rows,
                    datetime.now(UTC),
                    admitted_ttl=timedelta(seconds=get_scan_settings().admitted_ttl_s),
                )
                add_tasks(session, rows)
            if last:
                record_refusals(session, result.scan_id, result.refusals)
                mark_dispatched(session, result.scan_id, created_here=fresh if rows else None)
        result.tasks += len(rows)
        try:
            result.admitted += publish_grants(database_url, grants, publish)
        except TransientError as exc:
            # The tasks wait in the database; the coordinator admits them again later.
            log.warning("dispatch_publish_failed", error=str(exc)[:300])

    planned_tasks = plan(targets, tools, scope, result.refusals)
    upcoming = next(planned_tasks, None)
    while True:
        chunk: list[NewTask] = []
        while upcoming is not None and len(chunk) < CHUNK:
            budget = budgets.for_target(upcoming.target_key, upcoming.addresses)
            chunk.append(
                NewTask(
                    id=uuid.uuid4(),
                    target=upcoming.target.text(),
                    tool=upcoming.tool,
                    pool=pool_of(upcoming.tool),
                    options=(options or {}).get(upcoming.tool, {}),
                    target_key=upcoming.target_key,
                    budget_class=budget.budget_class,
                    max_concurrency=budget.max_concurrency,
                    rps=budget.rps,
                    max_runtime_s=budget.max_runtime_s,
                )
            )
            upcoming = next(planned_tasks, None)
        flush(chunk, last=upcoming is None)
        if upcoming is None:
            break
    log.info(
        "scan_dispatched",
        scan_id=str(result.scan_id),
        tasks=result.tasks,
        admitted=result.admitted,
        refused=len(result.refusals),
    )
    return result
