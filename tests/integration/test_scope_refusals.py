"""Hostile targets are refused by a named rule on both sides, and none reaches a tool.

Every case goes through the coordinator's check (``parse_target`` and ``Scope.check``, as
dispatch plans a scan) and, as a task built directly (bypassing the coordinator), through
the worker's ``execute``, with a recording tool that notes any call. Names that resolve
outside the scope are real ``/etc/hosts`` entries (resolving is real, connecting is never
attempted: the only tool here records and runs nothing). The hosts file is restored
exactly afterwards.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest

from contracts.events import FindingEvent
from contracts.finding import Finding
from contracts.task import TaskEvent, TaskEventType, TaskMessage, TaskStatus
from coordinator.scope import Scope
from coordinator.targets import TargetRefused, parse_target
from storage.artifacts import LocalArtifactStore
from workers.events import InProcessSink
from workers.execute import execute
from workers.tools.base import Invocation, RunContext, Tool
from workers.tools.registry import TOOLS

HOSTS = Path("/etc/hosts")
#: A domain of this run's own, so parallel runs and other tests never see these names.
D = f"sfscope-{secrets.token_hex(4)}.test"

#: What the names resolve to (only ever resolved: nothing here opens a connection).
HOST_ENTRIES = {
    f"out.{D}": ["10.0.0.1"],
    f"mapped.{D}": ["::ffff:10.0.0.1"],
    f"mixed.{D}": ["127.0.0.1", "10.0.0.1"],
    f"meta.{D}": ["169.254.169.254"],
    f"lo.{D}": ["127.0.0.1"],
    f"to-denied.{D}": ["127.0.0.53"],
    f"to-denied.ok.{D}": ["127.0.0.53"],
    f"rebind.{D}": ["127.0.0.1"],
    f"rebind.ok.{D}": ["127.0.0.1"],
}

SCOPE = Scope.parse(
    [
        "127.0.0.0/24",
        "127.0.2.0/24",
        "::1/128",
        "localhost",
        f"*.ok.{D}",  # allowed by name, whatever they resolve to ...
        "!127.0.0.53",  # ... except a denied address
        f"!secret.ok.{D}",
        f"!*.prod.ok.{D}",
    ]
)

ONE_TARGET = "a task carries exactly one target"


@dataclass(frozen=True)
class Case:
    target: str
    rule: str
    #: What the worker says when it differs (a CIDR is never a task's target).
    worker_reason: str | None = None


CASES: dict[str, Case] = {
    # Addresses outside the scope, in every spelling.
    "ipv4-outside": Case("10.0.0.1", "out-of-scope"),
    "loopback-outside-the-/24": Case("127.0.1.1", "out-of-scope"),
    "ipv4-mapped": Case("::ffff:10.0.0.1", "out-of-scope"),
    "ipv4-mapped-hex": Case("::ffff:0a00:0001", "out-of-scope"),
    "ipv6-outside": Case("2001:db8::1", "out-of-scope"),
    "ipv6-outside-bracketed-port": Case("[2001:db8::1]:443", "out-of-scope"),
    "cloud-metadata": Case("169.254.169.254", "out-of-scope"),
    "decimal": Case("167772161", "ambiguous-ip-spelling"),
    "decimal-loopback": Case("2130706433", "ambiguous-ip-spelling"),
    "octal": Case("012.0.0.1", "ambiguous-ip-spelling"),
    "octal-loopback": Case("0177.0.0.1", "ambiguous-ip-spelling"),
    "hex-dotted": Case("0x0a.0.0.1", "ambiguous-ip-spelling"),
    "hex-whole": Case("0x0a000001", "ambiguous-ip-spelling"),
    "hex-short": Case("0x7f.1", "ambiguous-ip-spelling"),
    "short": Case("10.1", "ambiguous-ip-spelling"),
    "trailing-dot-ip": Case("10.0.0.1.", "ambiguous-ip-spelling"),
    "unspecified-v4": Case("0.0.0.0", "unspecified-address"),
    "unspecified-v6": Case("[::]", "unspecified-address"),
    "zone-id": Case("fe80::1%eth0", "forbidden-character"),
    # CIDRs partly outside or overlapping a deny entry: refused whole.
    "cidr-partly-outside": Case("127.0.2.0/23", "out-of-scope", ONE_TARGET),
    "cidr-v6-partly-outside": Case("::/126", "out-of-scope", ONE_TARGET),
    "cidr-over-denied": Case("127.0.0.48/28", "denied", ONE_TARGET),
    "cidr-too-large": Case("10.0.0.0/8", "cidr-too-large"),
    # Names resolving outside the scope (hosts entries).
    "name-resolves-outside": Case(f"out.{D}", "resolves-out-of-scope"),
    "name-resolves-mapped-outside": Case(f"mapped.{D}", "resolves-out-of-scope"),
    "name-resolves-mixed": Case(f"mixed.{D}", "resolves-out-of-scope"),
    "name-resolves-metadata": Case(f"meta.{D}:80", "resolves-out-of-scope"),
    "url-host-resolves-outside": Case(f"http://out.{D}:8080/", "resolves-out-of-scope"),
    "name-resolves-denied": Case(f"to-denied.{D}", "resolves-denied"),
    "allowed-name-resolves-denied": Case(f"to-denied.ok.{D}", "resolves-denied"),
    # Deny entries inside the allowlist.
    "denied-ip": Case("127.0.0.53", "denied"),
    "denied-ip-mapped": Case("::ffff:127.0.0.53", "denied"),
    "denied-ip-in-url": Case("http://127.0.0.53:8080/", "denied"),
    "denied-name": Case(f"secret.ok.{D}", "denied"),
    "denied-wildcard": Case(f"db.prod.ok.{D}", "denied"),
    "denied-wildcard-apex": Case(f"https://prod.ok.{D}/", "denied"),
    # Option injection.
    "option-iL": Case("-iL /etc/passwd", "option-like"),
    "option-script": Case("--script=http-shellshock", "option-like"),
    "option-oN": Case("-oN/tmp/x", "option-like"),
    # Shell metacharacters.
    "subshell": Case("$(id)", "forbidden-character"),
    "backticks": Case("`id`", "forbidden-character"),
    "semicolon": Case("127.0.0.1;id", "forbidden-character"),
    "pipe": Case("127.0.0.1|id", "forbidden-character"),
    "and-and": Case("127.0.0.1&&id", "forbidden-character"),
    "newline": Case("127.0.0.1\nid", "forbidden-character"),
    "redirect": Case("127.0.0.1>/tmp/x", "forbidden-character"),
    "list": Case("127.0.0.1,10.0.0.1", "forbidden-character"),
    # Overlong names.
    "name-254-chars": Case(".".join(["a" * 63] * 3 + ["b" * 60, "t"]), "name-too-long"),
    "label-64-chars": Case(f"{'a' * 64}.test", "invalid-host-name"),
    # URLs.
    "url-file": Case("file:///etc/passwd", "url-scheme"),
    "url-gopher": Case("gopher://127.0.0.1:6379/_FLUSHALL", "url-scheme"),
    "url-credentials": Case("http://user:pw@127.0.0.1/", "url-credentials"),
    "url-userinfo-confusion": Case("http://127.0.0.1@10.0.0.1/", "url-credentials"),
    "url-host-outside": Case("http://10.0.0.1/", "out-of-scope"),
    "url-metadata": Case("http://169.254.169.254/latest/meta-data/", "out-of-scope"),
    "url-mapped-outside": Case("http://[::ffff:10.0.0.1]:80/", "out-of-scope"),
    "url-hex-host": Case("http://0x0a.0.0.1/", "ambiguous-ip-spelling"),
    "url-header-injection": Case("http://127.0.0.1/\r\nHost: x", "forbidden-character"),
    # Empty.
    "whitespace": Case(" \t ", "empty"),
}


class _HostsFile:
    """This run's own lines at the end of /etc/hosts; ``restore`` puts the file back."""

    def __init__(self) -> None:
        self.original = HOSTS.read_text()
        self.lines: dict[str, list[str]] = {}

    def _expected(self) -> str:
        base = self.original
        if base and not base.endswith("\n"):
            base += "\n"
        ours = (
            f"{address} {name}\n" for name, addresses in self.lines.items() for address in addresses
        )
        return base + "".join(ours)

    def set(self, name: str, addresses: list[str]) -> None:
        assert name.endswith(D)
        self.lines[name] = addresses
        HOSTS.write_text(self._expected())

    def restore(self) -> None:
        current = HOSTS.read_text()
        if current == self._expected():
            HOSTS.write_text(self.original)  # byte for byte as it was
            return
        # Someone else changed the file meanwhile: take out only this run's lines.
        kept = [line for line in current.splitlines(keepends=True) if D not in line]
        HOSTS.write_text("".join(kept))


@pytest.fixture(scope="module")
def hosts() -> Iterator[_HostsFile]:
    if not os.access(HOSTS, os.W_OK):
        pytest.skip("needs to add names to /etc/hosts (run as root)")
    entries = _HostsFile()
    try:
        for name, addresses in HOST_ENTRIES.items():
            entries.set(name, addresses)
        yield entries
    finally:
        entries.restore()
    assert D not in HOSTS.read_text()


class RecordingTool(Tool):
    """A plugin that only records being used; it never touches the network."""

    name = "test-recorder"
    calls: ClassVar[list[tuple[str, RunContext]]] = []

    def version(self) -> str:
        return "test-1"

    def invocation(self, ctx: RunContext) -> Invocation | None:
        self.calls.append(("invocation", ctx))
        return None  # a built-in check: collect() runs next

    def collect(self, ctx: RunContext) -> bytes:
        self.calls.append(("collect", ctx))
        return b"[]"

    def parse(self, raw: bytes, ctx: RunContext) -> list[Finding]:
        return []


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[RecordingTool]]:
    monkeypatch.setitem(TOOLS, RecordingTool.name, RecordingTool)
    RecordingTool.calls.clear()
    yield RecordingTool
    RecordingTool.calls.clear()


@dataclass
class Worker:
    """``execute`` with an in-process sink and a local artifact store, as a worker runs it."""

    artifacts: LocalArtifactStore
    scope: Scope = SCOPE
    events: list[TaskEvent] = field(default_factory=list)
    findings: list[FindingEvent] = field(default_factory=list)

    def run(self, target: str) -> TaskEvent:
        task = TaskMessage(
            task_id=uuid.uuid4(),
            scan_id=uuid.uuid4(),
            target=target,
            tool=RecordingTool.name,
            time_limit_s=5,
        )
        sink = InProcessSink(self.findings.extend, self.events.append)
        finished = execute(task, sink=sink, artifacts=self.artifacts, scope=self.scope)
        assert self.events[-1] == finished
        assert finished.type is TaskEventType.FINISHED
        return finished


@pytest.fixture
def worker(tmp_path: Path) -> Worker:
    return Worker(LocalArtifactStore(tmp_path / "artifacts"))


def coordinator_check(value: str, scope: Scope = SCOPE) -> list[str]:
    """The coordinator's check, as dispatch plans a scan: parse, then check each target."""
    return [text for target in parse_target(value) for text in scope.check(target)]


def test_the_table_has_at_least_thirty_hostile_targets() -> None:
    assert len(CASES) >= 30
    assert len({case.target for case in CASES.values()}) == len(CASES)


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_the_coordinator_refuses_each_hostile_target_by_its_rule(
    case: Case, hosts: _HostsFile
) -> None:
    with pytest.raises(TargetRefused) as refused:
        coordinator_check(case.target)
    assert refused.value.rule == case.rule, refused.value
    assert f"rule {case.rule}:" in str(refused.value)


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_the_worker_refuses_each_hostile_task_and_no_tool_runs(
    case: Case, hosts: _HostsFile, recorder: type[RecordingTool], worker: Worker
) -> None:
    if len(case.target) > 2048:
        pytest.skip("no task can carry it")
    finished = worker.run(case.target)
    assert finished.status is TaskStatus.FAILED
    assert finished.reason is not None
    assert (case.worker_reason or f"rule {case.rule}:") in finished.reason
    assert finished.argv is None and finished.artifact_ref is None
    assert recorder.calls == []
    assert worker.findings == []


def test_the_recording_tool_does_run_for_an_in_scope_target(
    hosts: _HostsFile, recorder: type[RecordingTool], worker: Worker
) -> None:
    """The control: the same harness sees the tool run when the target is fine."""
    for target in ("127.0.0.1", f"lo.{D}:8080", f"http://rebind.ok.{D}/"):
        finished = worker.run(target)
        assert finished.status is TaskStatus.SUCCEEDED, finished.reason
    assert [call for call, _ in recorder.calls] == ["invocation", "collect"] * 3
    pinned = [ctx.target for _, ctx in recorder.calls[::2]]
    assert [(t.host, t.ip, t.port) for t in pinned] == [
        (None, "127.0.0.1", None),
        (f"lo.{D}", "127.0.0.1", 8080),
        (f"rebind.ok.{D}", "127.0.0.1", 80),  # allowed by name, resolved and pinned
    ]


@pytest.mark.parametrize(
    ("name", "rebound_to", "rule"),
    [
        (f"rebind.{D}", ["10.0.0.1"], "resolves-out-of-scope"),
        (f"rebind.{D}", ["127.0.0.1", "::ffff:10.0.0.1"], "resolves-out-of-scope"),
        (f"rebind.ok.{D}", ["127.0.0.53"], "resolves-denied"),
    ],
    ids=["to-outside", "to-mixed", "allowed-name-to-denied"],
)
def test_a_name_rebound_between_dispatch_and_run_is_refused_by_the_worker(
    name: str,
    rebound_to: list[str],
    rule: str,
    hosts: _HostsFile,
    recorder: type[RecordingTool],
    worker: Worker,
) -> None:
    original = HOST_ENTRIES[name]
    assert coordinator_check(name) == original  # in scope when the scan is created
    hosts.set(name, rebound_to)
    try:
        finished = worker.run(name)
    finally:
        hosts.set(name, original)
    assert finished.status is TaskStatus.FAILED
    assert f"rule {rule}:" in (finished.reason or "")
    assert recorder.calls == []
