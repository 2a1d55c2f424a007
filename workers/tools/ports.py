"""Port lists as tasks carry them: ``"22,80,8000-8100"`` or a list of numbers."""

from __future__ import annotations

import re
from collections.abc import Iterable

from workers.tools.base import ToolError

_SPEC = re.compile(r"^[0-9,-]+$")
_MAX_PORT = 65535


def _bounded(text: str, spec: str) -> int:
    if not text.isdigit():
        raise ToolError(f"invalid port list {spec!r}: {text!r} is not a port number")
    port = int(text)
    if not 1 <= port <= _MAX_PORT:
        raise ToolError(f"invalid port list {spec!r}: {port} is outside 1-65535")
    return port


def port_ranges(spec: str) -> list[tuple[int, int]]:
    """Validated ``(first, last)`` ranges of a port list made of digits, commas and dashes."""
    if not _SPEC.fullmatch(spec):
        raise ToolError(f"invalid port list {spec!r}: only digits, commas and dashes are allowed")
    ranges = []
    for item in spec.split(","):
        first, dash, last = item.partition("-")
        low = _bounded(first, spec)
        high = _bounded(last, spec) if dash else low
        if high < low:
            raise ToolError(f"invalid port list {spec!r}: range {item!r} runs backwards")
        ranges.append((low, high))
    return ranges


def port_spec(value: object) -> str:
    """A port list option as the canonical text form nmap takes (``"22,80,8000-8100"``)."""
    if isinstance(value, str):
        ranges = port_ranges(value.strip())
    elif isinstance(value, Iterable) and not isinstance(value, bytes | dict):
        ranges = [(p, p) for p in _numbers(value)]
    else:
        raise ToolError(f"invalid port list {value!r}: give a string or a list of numbers")
    return ",".join(str(low) if low == high else f"{low}-{high}" for low, high in ranges)


def port_list(value: object) -> list[int]:
    """A port list option expanded to sorted, distinct port numbers."""
    ports: set[int] = set()
    for low, high in port_ranges(port_spec(value)):
        ports.update(range(low, high + 1))
    return sorted(ports)


def _numbers(values: Iterable[object]) -> list[int]:
    numbers = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ToolError(f"invalid port {value!r}: not an integer")
        numbers.append(_bounded(str(value), str(value)))
    if not numbers:
        raise ToolError("invalid port list: it is empty")
    return numbers
