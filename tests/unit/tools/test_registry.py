"""The tool registry: names to plugins, and what this worker can run."""

from __future__ import annotations

import pytest

from workers.tools.base import ToolError, ToolUnavailable
from workers.tools.nmap import NmapTool
from workers.tools.registry import TOOLS, available_tools, get_tool


def test_the_tools_are_registered_under_their_task_names() -> None:
    assert set(TOOLS) == {"nmap", "tcp-ports", "http-headers", "tls-cert", "http-exposure"}
    for name, tool in TOOLS.items():
        assert tool.name == name
        assert isinstance(get_tool(name), tool)


def test_pools_and_target_kinds() -> None:
    assert {n: (t.pool, t.target_kind) for n, t in TOOLS.items()} == {
        "nmap": ("network", "host"),
        "tcp-ports": ("default", "host"),
        "http-headers": ("web", "url"),
        "tls-cert": ("web", "host"),
        "http-exposure": ("web", "url"),
    }


def test_unknown_tool_is_an_error_listing_the_known_ones() -> None:
    with pytest.raises(
        ToolError, match="unknown tool 'nmapp'; known tools: http-exposure, http-headers, nmap"
    ):
        get_tool("nmapp")


def test_builtin_tools_report_the_distribution_version() -> None:
    versions = available_tools()
    for name in ("tcp-ports", "http-headers", "tls-cert", "http-exposure"):
        assert versions[name].startswith("builtin")


def test_unavailable_tools_are_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(NmapTool, "executable", "scanfleet-no-such-nmap")
    with pytest.raises(ToolUnavailable, match="not installed"):
        NmapTool().version()
    assert "nmap" not in available_tools()
    assert "tcp-ports" in available_tools()
