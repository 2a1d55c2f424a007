"""Creating a scan: plan target x tool, check scope, persist, publish the tasks.

The plan is streamed: targets are parsed, expanded and checked one at a time and
tasks are persisted and published in chunks, so memory stays flat in the number of
targets. Every refusal is recorded on the scan with the rule that refused it.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog

from contracts.task import TaskMessage
from coordinator.scope import Scope
from coordinator.targets import ParsedTarget, TargetRefused, parse_target
from storage.database import session_scope
from storage.scans import add_tasks, create_scan, record_refusals, task_rows

log = structlog.get_logger("scanfleet.coordinator")

CHUNK = 1000

#: Which tools apply to which kind of target, and the pool each runs in.
TOOL_POOLS = {"nmap": "network", "tcp-ports": "default", "http-headers": "web", "tls-cert": "web"}


def applies(tool: str, target: ParsedTarget) -> bool:
    if tool == "http-headers":
        return target.url is not None
    if tool == "tls-cert":
        return (target.url or "").startswith("https://") or (
            target.url is None and target.port is not None
        )
    return target.url is None


@dataclass
class DispatchResult:
    scan_id: uuid.UUID
    tasks: int = 0
    refusals: list[str] = field(default_factory=list)


def plan(
    targets: Iterable[str], tools: list[str], scope: Scope, refusals: list[str]
) -> Iterator[tuple[ParsedTarget, str]]:
    for raw in targets:
        try:
            for target in parse_target(raw):
                scope.check(target)
                for tool in tools:
                    if applies(tool, target):
                        yield target, tool
        except TargetRefused as exc:
            refusals.append(str(exc))
            log.warning("target_refused", target=raw[:200], rule=exc.rule, detail=exc.detail)


def dispatch(
    database_url: str,
    targets: Iterable[str],
    tools: list[str],
    scope: Scope,
    publish: Callable[[list[TaskMessage]], None],
    *,
    time_limit_s: int = 300,
    options: dict[str, dict[str, Any]] | None = None,
    scan_id: uuid.UUID | None = None,
    target_list: list[str] | None = None,
) -> DispatchResult:
    result = DispatchResult(scan_id or uuid.uuid4())
    # The effective configuration, hashed: two scans with the same hash ran the same way.
    config = {
        "tools": sorted(tools),
        "options": options or {},
        "time_limit_s": time_limit_s,
        "scope": scope.describe(),
    }
    config_hash = hashlib.sha256(orjson.dumps(config, option=orjson.OPT_SORT_KEYS)).hexdigest()
    with session_scope(database_url) as session:
        create_scan(
            session,
            result.scan_id,
            targets=target_list or [],
            tools=tools,
            config_hash=config_hash,
        )
    chunk: list[TaskMessage] = []

    def flush() -> None:
        if not chunk:
            return
        rows = task_rows(
            result.scan_id, ((t.task_id, t.target, t.tool, t.pool, t.options) for t in chunk)
        )
        with session_scope(database_url) as session:
            add_tasks(session, rows)
        publish(chunk)
        result.tasks += len(chunk)
        chunk.clear()

    for target, tool in plan(targets, tools, scope, result.refusals):
        chunk.append(
            TaskMessage(
                task_id=uuid.uuid4(),
                scan_id=result.scan_id,
                target=target.text(),
                tool=tool,
                pool=TOOL_POOLS.get(tool, "default"),
                options=(options or {}).get(tool, {}),
                time_limit_s=time_limit_s,
            )
        )
        if len(chunk) >= CHUNK:
            flush()
    flush()
    with session_scope(database_url) as session:
        record_refusals(session, result.scan_id, result.refusals)
        if result.tasks == 0:
            from storage.scans import finish_scan_if_done

            finish_scan_if_done(session, result.scan_id)
    log.info(
        "scan_dispatched",
        scan_id=str(result.scan_id),
        tasks=result.tasks,
        refused=len(result.refusals),
    )
    return result
