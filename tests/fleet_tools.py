"""Tool plugins for the fleet tests, loaded by worker processes via SCANFLEET_TOOL_PLUGINS.

``test-sleep`` is a real subprocess (its own process group, killed by the runner like any
tool) that records its pid, sleeps for ``seconds`` and reports one finding for the
target's port, so a test knows exactly which findings must exist once.
"""

from __future__ import annotations

import json
import sys
from typing import ClassVar

from contracts.enums import Confidence, FindingKind, Severity, Transport
from contracts.finding import Asset, Finding
from workers.tools.base import Invocation, RunContext, Tool, ToolError

_SCRIPT = """
import json, os, sys, time
pid_dir, seconds = sys.argv[1], float(sys.argv[2])
if pid_dir:
    open(os.path.join(pid_dir, str(os.getpid())), "w").close()
time.sleep(seconds)
print(json.dumps({"slept": seconds}))
"""


class SleepTool(Tool):
    name: ClassVar[str] = "test-sleep"
    pool: ClassVar[str] = "default"
    target_kind: ClassVar[str] = "host"

    def version(self) -> str:
        return "test-sleep-1"

    def invocation(self, ctx: RunContext) -> Invocation:
        seconds = float(ctx.options.get("seconds", 1.0))
        pid_dir = str(ctx.options.get("pid_dir", ""))
        return Invocation(
            argv=(sys.executable, "-c", _SCRIPT, pid_dir, repr(seconds)),
            media_type="application/json",
        )

    def parse(self, raw: bytes, ctx: RunContext) -> list[Finding]:
        try:
            json.loads(raw)
        except ValueError as exc:
            raise ToolError(f"not JSON: {raw[:100]!r}") from exc
        return [
            Finding(
                kind=FindingKind.NETWORK_SERVICE,
                rule_id="test-sleep-done",
                title="test-sleep ran",
                severity=Severity.INFO,
                confidence=Confidence.HIGH,
                asset=Asset(
                    ip=ctx.target.ip,
                    host=ctx.target.host,
                    transport=Transport.TCP,
                    port=ctx.target.port or 1,
                ),
            )
        ]
