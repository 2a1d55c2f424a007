"""Children that die with their parent: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` on Linux.

A worker killed with SIGKILL cannot kill its tools' process groups; the kernel does it
for the tool process itself, so a lost worker's scan does not go on against the target
while its retry runs elsewhere (the budget would be exceeded). Ingest's consumer
processes use it to die with their supervisor.
"""

from __future__ import annotations

import ctypes
import signal

_PR_SET_PDEATHSIG = 1
# Loaded here, once: a child between fork and exec must not load libraries.
try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    _LIBC = None


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL the calling process when its parent dies."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
