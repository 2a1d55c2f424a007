"""What built-in checks (tools that run inside the worker) have in common: their version."""

from __future__ import annotations

from importlib import metadata

from workers.tools.base import Tool


def builtin_version() -> str:
    """``builtin-<scanfleet version>``: a built-in check changes with the distribution."""
    try:
        return f"builtin-{metadata.version('scanfleet')}"
    except metadata.PackageNotFoundError:
        return "builtin"


class BuiltinCheck(Tool):
    """A check that runs inside the worker (``collect``): it is always available and its
    version is the distribution's."""

    def version(self) -> str:
        return builtin_version()
