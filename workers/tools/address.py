"""The address a tool may send traffic to, checked again inside the tool (defence in depth).

The coordinator and the worker validate targets before a tool runs; a plugin still refuses
anything that could be read as an option or is not a plain IP address or host name, before
it builds an argument list or opens a socket.
"""

from __future__ import annotations

import re

from contracts.finding import normalise_ip
from workers.tools.base import Target, ToolError

_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
    r"(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$"
)


def is_ip(value: str) -> bool:
    try:
        normalise_ip(value)
    except ValueError:
        return False
    return True


def checked_host_name(value: str) -> str:
    """A syntactically valid DNS name (lower-cased, trailing dot dropped), else ToolError."""
    name = value.strip().rstrip(".").lower()
    if not _HOST_NAME.fullmatch(name):
        raise ToolError(f"refused target host {value!r}: not a valid host name")
    return name


def checked_address(target: Target) -> str:
    """The target's address (IP if resolved, else host name), refused unless it is one.

    Never returns text that starts with '-' or holds whitespace, so it cannot become an
    option of the tool it is passed to.
    """
    raw = target.ip or target.host
    if not raw:
        raise ToolError("refused target: it has neither an ip nor a host")
    if raw.startswith("-") or raw != raw.strip() or any(c.isspace() for c in raw):
        raise ToolError(f"refused target address {raw!r}: looks like an option or holds spaces")
    if target.ip is not None:
        try:
            return normalise_ip(raw)
        except ValueError as exc:
            raise ToolError(f"refused target ip {raw!r}: not an IP address") from exc
    if is_ip(raw):
        return normalise_ip(raw)
    return checked_host_name(raw)


def server_name(target: Target) -> str | None:
    """The host name the target is known by (for SNI, Host and certificate checks), if any."""
    if target.host is None or is_ip(target.host):
        return None
    return checked_host_name(target.host)
