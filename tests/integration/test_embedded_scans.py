"""Scans on the embedded fleet (StubBroker, in-process events, SQLite): failing tools fail
their own task only, hanging tools are killed at their limit, re-scans are idempotent."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from contracts.finding import Finding
from contracts.scan import BudgetOverride
from coordinator.scan_command import run_embedded, summary_json
from coordinator.scope import LOOPBACK_SCOPE, Scope
from coordinator.settings import get_scan_settings
from workers.tools.base import Invocation, RunContext, Tool, ToolError
from workers.tools.registry import TOOLS

PY = sys.executable


class _ScriptTool(Tool):
    """A real subprocess tool whose behaviour a test chooses."""

    script = ""

    def version(self) -> str:
        return "test-1"

    def invocation(self, ctx: RunContext) -> Invocation:
        return Invocation(argv=(PY, "-c", self.script))

    def parse(self, raw: bytes, ctx: RunContext) -> list[Finding]:
        if raw.strip() != b"[]":
            raise ToolError(f"expected an empty JSON list, got {raw[:40]!r}")
        return []


class HangingTool(_ScriptTool):
    name = "test-hang"
    script = "import time; time.sleep(600)"


class CrashingTool(_ScriptTool):
    name = "test-crash"
    script = "import sys; sys.stderr.write('segfault in probe'); sys.exit(3)"


class GarbageTool(_ScriptTool):
    name = "test-garbage"
    script = "print('<<<not the format>>>')"


@pytest.fixture
def test_tools() -> Iterator[None]:
    added = {t.name: t for t in (HangingTool, CrashingTool, GarbageTool)}
    TOOLS.update(added)
    try:
        yield
    finally:
        for name in added:
            TOOLS.pop(name, None)


@pytest.fixture
def listener() -> Iterator[int]:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        server.close()


@pytest.fixture
def embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SCANFLEET_ARTIFACT_URL", (tmp_path / "artifacts").as_uri())
    from storage.settings import get_settings

    get_settings.cache_clear()
    return f"sqlite:///{tmp_path / 'scanfleet.db'}"


def _scan(url: str, tools: list[str], port: int, time_limit: int = 60) -> dict:
    summary, refusals = run_embedded(
        url,
        ["127.0.0.1"],
        tools,
        Scope.parse(LOOPBACK_SCOPE),
        Console(file=None, quiet=True),
        show_progress=False,
        budgets=get_scan_settings().budget_policy(None, BudgetOverride(max_runtime_s=time_limit)),
        options={"tcp-ports": {"ports": str(port)}},
    )
    return summary_json(url, summary, refusals)


def test_failing_and_hanging_tools_fail_their_task_and_the_scan_still_completes_partial(
    embedded: str, test_tools: None, listener: int
) -> None:
    started = time.monotonic()
    data = _scan(
        embedded, ["test-hang", "test-crash", "test-garbage", "tcp-ports"], listener, time_limit=3
    )
    assert time.monotonic() - started < 60
    tasks = {t["tool"]: t for t in data["tasks"]}
    assert tasks["test-hang"]["state"] == "timed_out"
    assert "time limit of 3s" in tasks["test-hang"]["reason"]
    assert tasks["test-crash"]["state"] == "failed"
    assert tasks["test-crash"]["exit_code"] == 3
    assert "segfault in probe" in tasks["test-crash"]["reason"]
    assert tasks["test-garbage"]["state"] == "failed"
    assert "unparsable test-garbage output" in tasks["test-garbage"]["reason"]
    assert tasks["tcp-ports"]["state"] == "succeeded"
    assert data["scan"]["status"] == "partial"
    # The scan says which tasks failed and why.
    assert "3 of 4 task(s) did not succeed" in data["scan"]["reason"]
    assert "test-crash on 127.0.0.1: failed" in data["scan"]["reason"]
    # A tool's own failure or timeout is final: never retried.
    assert {t["attempts"] for t in data["tasks"]} == {1}
    assert [f["port"] for f in data["findings"]] == [listener]
    # Every task recorded the exact argument list it ran (or none for built-ins).
    assert tasks["test-crash"]["argv"][0] == PY


def test_scanning_twice_keeps_one_finding_with_two_observations_and_moves_last_seen(
    embedded: str, listener: int
) -> None:
    first = _scan(embedded, ["tcp-ports"], listener)
    second = _scan(embedded, ["tcp-ports"], listener)
    assert first["scan"]["status"] == second["scan"]["status"] == "completed"
    assert len(first["findings"]) == len(second["findings"]) == 1
    before, after = first["findings"][0], second["findings"][0]
    assert before["fingerprint"] == after["fingerprint"]
    assert after["observations"] == 2
    assert after["last_seen"] > before["last_seen"]
    assert after["first_seen"] == before["first_seen"]


def test_out_of_scope_and_hostile_targets_are_refused_with_their_rule(embedded: str) -> None:
    summary, refusals = run_embedded(
        embedded,
        ["10.1.2.3", "-iL /etc/passwd", "127.0.0.1;id", "0x7f.0.0.1"],
        ["tcp-ports"],
        Scope.parse(LOOPBACK_SCOPE),
        Console(file=None, quiet=True),
        show_progress=False,
    )
    rules = " ".join(refusals)
    assert "rule out-of-scope" in rules
    assert "rule option-like" in rules
    assert "rule forbidden-character" in rules
    assert "rule ambiguous-ip-spelling" in rules
    assert summary.tasks_total == 0


def test_tasks_show_gives_the_exact_argv_version_config_hash_and_artifact(
    embedded: str, test_tools: None, listener: int
) -> None:
    data = _scan(embedded, ["test-crash", "tcp-ports"], listener)
    crash = next(t for t in data["tasks"] if t["tool"] == "test-crash")
    tcp = next(t for t in data["tasks"] if t["tool"] == "tcp-ports")
    assert data["scan"]["config_hash"] and len(data["scan"]["config_hash"]) == 64
    assert crash["argv"] == [PY, "-c", CrashingTool.script]
    assert crash["config_hash"] and crash["tool_version"] == "test-1"
    assert tcp["artifact_ref"].startswith("sha256:")
    shown = subprocess.run(
        [PY, "-m", "coordinator.cli", "tasks", "show", crash["id"], "--json"],
        env={**os.environ, "SCANFLEET_DATABASE_URL": embedded},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["argv"] == crash["argv"]
