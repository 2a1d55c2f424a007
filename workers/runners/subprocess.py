"""Run an argument list as a subprocess: no shell, a hard time limit, capped output.

The process gets a session (and so a process group) of its own; on timeout or
cancellation the whole group is killed, so a tool's children die with it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from contracts.errors import PermanentError
from workers.runners.parent_death import die_with_parent

DEFAULT_STDOUT_CAP = 64 * 1024 * 1024
DEFAULT_STDERR_CAP = 1024 * 1024


class RunnerError(PermanentError):
    """The program could not be started."""


@dataclass(frozen=True)
class RunResult:
    argv: tuple[str, ...]
    exit_code: int | None
    stdout: bytes
    stderr: bytes
    timed_out: bool
    cancelled: bool
    stdout_truncated: bool
    stderr_truncated: bool
    seconds: float


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _read_capped(stream: object, cap: int, out: list[bytes], truncated: list[bool]) -> None:
    read = stream.read  # type: ignore[attr-defined]
    size = 0
    while True:
        chunk = read(65536)
        if not chunk:
            return
        if size < cap:
            keep = chunk[: cap - size]
            out.append(keep)
            size += len(keep)
            if len(keep) < len(chunk):
                truncated[0] = True
        else:
            truncated[0] = True  # keep draining so the tool never blocks on a full pipe


def run(
    argv: Sequence[str],
    *,
    timeout_s: float,
    stdout_cap: int = DEFAULT_STDOUT_CAP,
    stderr_cap: int = DEFAULT_STDERR_CAP,
    cancel: threading.Event | None = None,
    env: dict[str, str] | None = None,
) -> RunResult:
    """Run ``argv`` (never through a shell) and return what it did."""
    if not argv or any(not isinstance(a, str) for a in argv):
        raise RunnerError("argv must be a non-empty list of strings")
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=env,
            # Killed by the kernel if this worker dies (its thread that started it, too).
            preexec_fn=die_with_parent,
        )
    except OSError as exc:
        raise RunnerError(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from exc
    out: list[bytes] = []
    err: list[bytes] = []
    out_truncated, err_truncated = [False], [False]
    readers = [
        threading.Thread(
            target=_read_capped, args=(process.stdout, stdout_cap, out, out_truncated)
        ),
        threading.Thread(
            target=_read_capped, args=(process.stderr, stderr_cap, err, err_truncated)
        ),
    ]
    for reader in readers:
        reader.daemon = True
        reader.start()
    timed_out = cancelled = False
    deadline = started + timeout_s
    while True:
        try:
            process.wait(timeout=0.05)
            break
        except subprocess.TimeoutExpired:
            pass
        if cancel is not None and cancel.is_set():
            cancelled = True
            _kill_group(process)
        elif time.monotonic() >= deadline:
            timed_out = True
            _kill_group(process)
    # The group may still hold the pipes open (a child that outlived the parent).
    _kill_group(process)
    for reader in readers:
        reader.join(timeout=5)
    return RunResult(
        argv=tuple(argv),
        exit_code=process.returncode,
        stdout=b"".join(out),
        stderr=b"".join(err),
        timed_out=timed_out,
        cancelled=cancelled,
        stdout_truncated=out_truncated[0],
        stderr_truncated=err_truncated[0],
        seconds=time.monotonic() - started,
    )
