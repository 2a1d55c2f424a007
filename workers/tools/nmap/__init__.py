"""nmap: TCP connect scan with service and version detection, XML on stdout.

Options (``ctx.options``):

* ``ports``: port list (``"22,80,8000-8100"`` or a list of numbers); default: the
  target's port for a ``host:port`` target, else nmap's ``--top-ports`` with
  ``top_ports`` (default 100) ports;
* ``version_detection``: run ``-sV`` (default true);
* ``version_intensity``: 0-9, nmap's ``--version-intensity`` (default 2, nmap's
  ``--version-light``: a full-intensity probe of an odd service can take minutes).

The rate budget becomes ``--max-rate`` and the task's time limit ``--host-timeout`` (with
a margin, so nmap still writes its XML before the runner's hard limit strikes).
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
from typing import ClassVar

from contracts.finding import Finding
from workers.tools.address import checked_address
from workers.tools.base import Invocation, RunContext, Tool, ToolError, ToolUnavailable
from workers.tools.nmap import parser
from workers.tools.ports import port_spec

_VERSION = re.compile(r"Nmap version (\S+)")
DEFAULT_TOP_PORTS = 100


class NmapTool(Tool):
    name: ClassVar[str] = "nmap"
    pool: ClassVar[str] = "network"
    target_kind: ClassVar[str] = "host"
    default_time_limit_s: ClassVar[int] = 600

    executable: ClassVar[str] = "nmap"

    def version(self) -> str:
        path = shutil.which(self.executable)
        if path is None:
            raise ToolUnavailable(f"{self.executable} is not installed on this worker")
        try:
            probe = subprocess.run(
                [path, "--version"], capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ToolUnavailable(f"{self.executable} --version failed: {exc}") from exc
        match = _VERSION.search(probe.stdout)
        if probe.returncode != 0 or match is None:
            raise ToolUnavailable(f"{self.executable} --version printed no version")
        return match.group(1)

    def invocation(self, ctx: RunContext) -> Invocation:
        address = checked_address(ctx.target)
        argv = [self.executable, "-sT"]
        if _flag(ctx.options, "version_detection", default=True):
            argv.append("-sV")
            intensity = _intensity(ctx.options.get("version_intensity", DEFAULT_INTENSITY))
            argv += ["--version-intensity", str(intensity)]
        argv += ["-Pn", "-n", "--open", "-oX", "-"]
        if _is_ipv6(address):
            argv.append("-6")
        argv += _port_args(ctx.options, ctx.target.port)
        if ctx.rps is not None:
            argv += ["--max-rate", _rate(ctx.rps)]
        argv += ["--host-timeout", f"{_host_timeout(ctx.time_limit_s)}s"]
        argv += ["--", address]
        return Invocation(
            argv=tuple(argv), media_type="application/xml", ok_exit_codes=frozenset({0})
        )

    def parse(self, raw: bytes, ctx: RunContext) -> list[Finding]:
        return parser.parse(raw, ctx.target)


def _port_args(options: dict[str, object], target_port: int | None) -> list[str]:
    if options.get("ports") is not None:
        return ["-p", port_spec(options["ports"])]
    if target_port is not None:  # a host:port target
        return ["-p", port_spec([target_port])]
    top = options.get("top_ports", DEFAULT_TOP_PORTS)
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= 65535:
        raise ToolError(f"invalid top_ports {top!r}: give an integer between 1 and 65535")
    return ["--top-ports", str(top)]


def _flag(options: dict[str, object], key: str, *, default: bool) -> bool:
    value = options.get(key, default)
    if not isinstance(value, bool):
        raise ToolError(f"invalid {key} {value!r}: give true or false")
    return value


DEFAULT_INTENSITY = 2


def _intensity(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 9:
        raise ToolError(f"invalid version_intensity {value!r}: give an integer between 0 and 9")
    return value


def _rate(rps: float) -> str:
    if rps <= 0:
        raise ToolError(f"invalid rate {rps!r}: must be positive")
    # nmap takes decimals; round down to a thousandth so the budget is never exceeded.
    text = f"{int(rps * 1000) / 1000:.3f}".rstrip("0").rstrip(".")
    if text == "0":
        raise ToolError(f"invalid rate {rps!r}: below nmap's resolution of 0.001/s")
    return text


def _host_timeout(time_limit_s: float) -> int:
    """Leave nmap a fifth of the limit (at most 30 s) to write its output."""
    return max(1, int(time_limit_s - min(30.0, time_limit_s * 0.2)))


def _is_ipv6(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).version == 6
    except ValueError:
        return False
