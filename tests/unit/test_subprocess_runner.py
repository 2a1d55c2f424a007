"""The subprocess runner: argument lists, hard timeouts that kill the group, capped output."""

from __future__ import annotations

import sys
import threading
import time

import psutil
import pytest

from workers.runners.subprocess import RunnerError, run

PY = sys.executable


def test_output_and_exit_code_are_returned_without_a_shell() -> None:
    result = run([PY, "-c", "import sys; print('$(id)'); sys.exit(3)"], timeout_s=10)
    assert result.exit_code == 3
    assert result.stdout == b"$(id)\n"  # printed literally: no shell ever saw it
    assert not result.timed_out


def test_a_hanging_tool_and_its_children_are_killed_at_the_time_limit() -> None:
    script = (
        "import subprocess, sys, time;"
        f"c = subprocess.Popen([{PY!r}, '-c', 'import time; time.sleep(60)']);"
        "print(c.pid, flush=True); time.sleep(60)"
    )
    started = time.monotonic()
    result = run([PY, "-c", script], timeout_s=1.0)
    assert result.timed_out
    assert time.monotonic() - started < 10
    child = int(result.stdout.split()[0])
    time.sleep(0.2)
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == "zombie"


def test_output_beyond_the_cap_is_truncated_and_the_tool_is_not_blocked() -> None:
    result = run(
        [PY, "-c", "import sys; sys.stdout.write('x' * 5_000_000)"],
        timeout_s=20,
        stdout_cap=1000,
    )
    assert result.exit_code == 0
    assert len(result.stdout) == 1000
    assert result.stdout_truncated


def test_cancellation_kills_the_tool_within_a_fraction_of_a_second() -> None:
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    result = run([PY, "-c", "import time; time.sleep(30)"], timeout_s=30, cancel=cancel)
    assert result.cancelled and not result.timed_out
    assert time.monotonic() - started < 5


def test_a_missing_program_is_a_clear_error() -> None:
    with pytest.raises(RunnerError, match="cannot start 'no-such-tool-here'"):
        run(["no-such-tool-here", "--version"], timeout_s=5)
