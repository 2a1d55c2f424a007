"""What a tool plugin is.

A plugin says how to run its tool and how to read the tool's output, nothing else:
retries, budgets, time limits, output caps, artifacts and publishing belong to the
worker framework. Two shapes:

* an external tool (nmap, ...) returns an :class:`Invocation` (an argument list, never
  shell text) from :meth:`Tool.invocation`; the runner executes it;
* a built-in check implements :meth:`Tool.collect`, which does the network work in
  process and returns the raw observations as bytes (JSON), exactly like a tool's output.

Either way :meth:`Tool.parse` is a pure function ``bytes -> list[Finding]`` so it is
tested on real recorded output.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from contracts.errors import PermanentError
from contracts.finding import Finding


class ToolError(PermanentError):
    """The tool failed or its output could not be read; the task fails with this reason."""


class ToolUnavailable(ToolError):
    """The tool is not installed on this worker."""


@dataclass(frozen=True)
class Target:
    """A validated scan target as a task carries it: never shell text, never an option."""

    host: str | None = None
    ip: str | None = None
    port: int | None = None
    url: str | None = None

    @property
    def address(self) -> str:
        address = self.ip or self.host
        assert address is not None
        return address


@dataclass(frozen=True)
class RunContext:
    """Everything a tool needs to run one task."""

    target: Target
    time_limit_s: float
    #: Requests per second this task may send to the target (None: unlimited).
    rps: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    #: Set when the task is cancelled or its time is up: built-in checks stop promptly.
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def cancelled(self) -> bool:
        return self.cancel.is_set()


@dataclass(frozen=True)
class Invocation:
    argv: tuple[str, ...]
    #: Media type of the output the parser reads (stdout).
    media_type: str = "text/plain"
    #: Exit codes that still mean "the tool ran" (nmap exits 0 even with no open ports).
    ok_exit_codes: frozenset[int] = frozenset({0})


class Tool(ABC):
    name: ClassVar[str]
    #: The worker pool whose queue carries this tool's tasks.
    pool: ClassVar[str] = "default"
    #: What the task's target must be: "host" (IP or name) or "url".
    target_kind: ClassVar[str] = "host"
    #: Default time limit of one task, in seconds.
    default_time_limit_s: ClassVar[int] = 300

    @classmethod
    def accepts(cls, *, url: str | None, port: int | None) -> bool:
        """Whether a scan plans a task of this tool for a target with this URL and port."""
        return (url is not None) == (cls.target_kind == "url")

    @abstractmethod
    def version(self) -> str:
        """The tool's version, probed on the worker (raises :class:`ToolUnavailable`)."""

    def invocation(self, ctx: RunContext) -> Invocation | None:
        """The argument list to execute, or None for a built-in check."""
        return None

    def collect(self, ctx: RunContext) -> bytes:
        """Built-in checks: do the network work, return the raw observations."""
        raise NotImplementedError(f"{self.name} is an external tool; it has no collect()")

    @abstractmethod
    def parse(self, raw: bytes, ctx: RunContext) -> list[Finding]:
        """Pure: the tool's raw output to findings (raises :class:`ToolError`)."""
