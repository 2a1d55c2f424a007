"""The tool plugins this worker knows, by the name tasks use."""

from __future__ import annotations

import functools

from workers.tools.base import Tool, ToolError, ToolUnavailable
from workers.tools.http_exposure import HttpExposureTool
from workers.tools.http_headers import HttpHeadersTool
from workers.tools.nmap import NmapTool
from workers.tools.tcp_ports import TcpPortsTool
from workers.tools.tls_cert import TlsCertTool

TOOLS: dict[str, type[Tool]] = {
    tool.name: tool
    for tool in (NmapTool, TcpPortsTool, HttpHeadersTool, TlsCertTool, HttpExposureTool)
}


def get_tool(name: str) -> Tool:
    """A new instance of the named tool (ToolError naming the known tools if unknown)."""
    try:
        tool = TOOLS[name]
    except KeyError:
        known = ", ".join(sorted(TOOLS))
        raise ToolError(f"unknown tool {name!r}; known tools: {known}") from None
    return tool()


@functools.lru_cache(maxsize=64)
def tool_version(name: str) -> str:
    """The named tool's version, probed once per process (a probe may spawn the tool).

    A tool that is not installed raises every time: failures are not cached.
    """
    return get_tool(name).version()


def available_tools() -> dict[str, str]:
    """name -> version of each tool that can run on this worker (unavailable ones left out)."""
    versions = {}
    for name, tool in TOOLS.items():
        try:
            versions[name] = tool().version()
        except ToolUnavailable:
            continue
    return versions
