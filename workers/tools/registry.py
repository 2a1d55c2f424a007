"""The tool plugins this worker knows, by the name tasks use.

Besides the built-in plugins, ``SCANFLEET_TOOL_PLUGINS`` names more by import path
(``package.module:ClassName``, comma-separated): a site's own tools, loaded by the
coordinator (to plan their tasks) and by the workers (to run them).
"""

from __future__ import annotations

import functools
import importlib
import os

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


PLUGINS_ENV = "SCANFLEET_TOOL_PLUGINS"


@functools.lru_cache(maxsize=8)
def _plugins(spec: str) -> dict[str, type[Tool]]:
    """The plugins ``spec`` names, imported once."""
    from contracts.errors import ConfigError

    loaded: dict[str, type[Tool]] = {}
    for entry in filter(None, (part.strip() for part in spec.split(","))):
        module_name, _, class_name = entry.partition(":")
        try:
            tool = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigError(f"{PLUGINS_ENV}: cannot load {entry!r}: {exc}") from exc
        if not (isinstance(tool, type) and issubclass(tool, Tool)):
            raise ConfigError(f"{PLUGINS_ENV}: {entry!r} is not a Tool subclass")
        loaded[tool.name] = tool
    return loaded


def tools() -> dict[str, type[Tool]]:
    """The built-in tools and the configured plugins, by name."""
    return {**TOOLS, **_plugins(os.environ.get(PLUGINS_ENV, ""))}


def get_tool(name: str) -> Tool:
    """A new instance of the named tool (ToolError naming the known tools if unknown)."""
    known_tools = tools()
    try:
        tool = known_tools[name]
    except KeyError:
        known = ", ".join(sorted(known_tools))
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
    for name, tool in tools().items():
        try:
            versions[name] = tool().version()
        except ToolUnavailable:
            continue
    return versions
