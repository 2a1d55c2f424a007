"""Budgets and the task lifecycle on a fleet of real processes (several workers, ingest,
coordinator) with the machine's RabbitMQ and PostgreSQL: per-target concurrency is exact,
a hung tool is killed at its limit and frees its lease at once, cancellation, a worker's
SIGKILL or SIGTERM and a RabbitMQ restart each end with every task final and every finding
recorded exactly once."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.tools.servers import HttpServer, Page
from tests.integration.fleet import (
    FINAL,
    Fleet,
    max_overlap,
    observations,
    parse_time,
    pids_alive,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def fleet(database_url: str, vhost: str, tmp_path: Path) -> Iterator[Fleet]:
    running = Fleet(database_url, vhost, tmp_path)
    running.start_services()
    try:
        yield running
    finally:
        running.stop()


def _targets(host: str, count: int, first_port: int = 1001) -> list[str]:
    return [f"{host}:{port}" for port in range(first_port, first_port + count)]


def _sleep_scan(
    fleet: Fleet, targets: list[str], seconds: float, *options: str, pid_dir: Path | None = None
) -> str:
    """A scan of ``test-sleep`` tasks that sleep ``seconds`` (recording pids in pid_dir)."""
    extra = ["--tool-option", f"test-sleep.pid_dir={pid_dir}"] if pid_dir else []
    return fleet.scan(
        targets,
        "--tools",
        "test-sleep",
        "--tool-option",
        f"test-sleep.seconds={seconds}",
        *extra,
        *options,
    )


def _assert_exactly_once(fleet: Fleet, scan_id: str, tasks: list[dict]) -> None:
    succeeded = [t for t in tasks if t["state"] == "succeeded"]
    expected = sum(t["findings"] or 0 for t in succeeded)
    assert fleet.wait_ingested(scan_id, expected) == expected, fleet.logs()
    total, distinct = observations(fleet.database_url, scan_id)
    assert (total, distinct) == (expected, expected)


def test_three_targets_never_run_more_than_their_max_concurrency(fleet: Fleet) -> None:
    for n in range(3):
        fleet.start_worker(f"worker{n}", 4)
    targets = [t for host in ("127.0.0.1", "127.0.0.2", "127.0.0.3") for t in _targets(host, 10)]
    scan_id = _sleep_scan(
        fleet,
        targets,
        0.6,
        "--max-concurrency",
        "2",
    )
    summary = fleet.wait_final(scan_id)
    tasks = fleet.tasks(scan_id)
    assert summary["status"] == "completed", tasks
    assert len(tasks) == 30
    peaks = max_overlap(tasks)
    assert set(peaks) == {"127.0.0.1", "127.0.0.2", "127.0.0.3"}
    assert max(peaks.values()) <= 2, peaks
    # The fleet had 12 threads for 6 slots: each target did run 2 at once.
    assert min(peaks.values()) == 2, peaks
    assert {t["worker"] for t in tasks}.__len__() >= 2
    _assert_exactly_once(fleet, scan_id, tasks)


def test_two_hundred_tasks_on_one_target_with_eight_threads(fleet: Fleet) -> None:
    fleet.start_worker("worker-a", 4)
    fleet.start_worker("worker-b", 4)
    scan_id = fleet.scan(
        _targets("127.0.0.4", 200, 20001), "--tools", "tcp-ports", "--max-concurrency", "2"
    )
    summary = fleet.wait_final(scan_id, timeout=300)
    tasks = fleet.tasks(scan_id)
    assert summary["status"] == "completed", [t for t in tasks if t["state"] != "succeeded"]
    assert len(tasks) == 200
    assert max_overlap(tasks) == {"127.0.0.4": 2}


def _most_in_one_second(times: list[float]) -> int:
    ordered = sorted(times)
    return max(
        sum(1 for later in ordered[i:] if later - start < 1.0) for i, start in enumerate(ordered)
    )


def test_the_rate_budget_reaches_the_tool_and_is_split_between_tasks(fleet: Fleet) -> None:
    fleet.start_worker("worker", 4)
    catch_all = Page(body=b"<html>ok</html>")
    with HttpServer({}, default=catch_all, keep_alive=True) as server:
        single = fleet.scan([server.url()], "--tools", "http-exposure", "--rps", "10")
        assert fleet.wait_final(single)["status"] == "completed"
        times = list(server.times)
    # ~60 requests at 10/s: never more than rps + 1 in a second, and paced over about
    # the time the budget implies (not bunched up, not dragged out).
    assert len(times) > 50
    assert _most_in_one_second(times) <= 11
    span = max(times) - min(times)
    assert (len(times) - 1) / 10 * 0.9 <= span <= len(times) / 10 * 1.5 + 2, span

    # Two tasks on one target (two web servers on 127.0.0.1) share its 10 requests/s.
    with (
        HttpServer({}, default=catch_all, keep_alive=True) as first,
        HttpServer({}, default=catch_all, keep_alive=True) as second,
    ):
        shared = fleet.scan(
            [first.url(), second.url()],
            "--tools",
            "http-exposure",
            "--rps",
            "10",
            "--max-concurrency",
            "2",
        )
        assert fleet.wait_final(shared)["status"] == "completed"
        both = list(first.times) + list(second.times)
    tasks = fleet.tasks(shared)
    assert max_overlap(tasks) == {"127.0.0.1": 2}, tasks
    # Each task paces its own 5/s share; like the single task above, each may show one
    # request more in a window when arrivals jitter around the window's edge.
    assert _most_in_one_second(list(first.times)) <= 6
    assert _most_in_one_second(list(second.times)) <= 6
    assert _most_in_one_second(both) <= 10 + 2


def test_a_hung_tool_is_killed_at_its_limit_and_frees_its_lease_at_once(
    fleet: Fleet, tmp_path: Path
) -> None:
    fleet.extra_env["SCANFLEET_LEASE_TTL_S"] = "30"  # freeing must not wait for expiry
    fleet.start_worker("worker", 4)
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    hung = _sleep_scan(
        fleet,
        ["127.0.0.5:1"],
        600,
        "--max-concurrency",
        "1",
        "--max-runtime",
        "2",
        pid_dir=pid_dir,
    )
    # Same target, one slot: the waiting task is admitted only when the hung one ends.
    waiting = fleet.scan(["127.0.0.5:2"], "--tools", "tcp-ports", "--max-concurrency", "1")
    assert fleet.wait_final(hung)["status"] == "failed"
    assert fleet.wait_final(waiting)["status"] == "completed"
    (hung_task,) = fleet.tasks(hung)
    (next_task,) = fleet.tasks(waiting)
    assert hung_task["state"] == "timed_out", hung_task
    assert "time limit of 2s" in hung_task["reason"]
    assert pids_alive(pid_dir) == [], "the hung tool's process is gone"
    # The waiting task of the same target started after the hung one ended, and long
    # before the 30 s lease could have expired: its lease was freed when it ended.
    gap = parse_time(next_task["started_at"]) - parse_time(hung_task["finished_at"])
    assert 0 <= gap.total_seconds() < 10, gap


def test_cancel_stops_running_tools_and_queued_tasks(fleet: Fleet, tmp_path: Path) -> None:
    fleet.start_worker("worker", 4)
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    scan_id = _sleep_scan(
        fleet,
        _targets("127.0.0.6", 6),
        60,
        "--max-concurrency",
        "2",
        pid_dir=pid_dir,
    )
    fleet.wait_tasks(scan_id, lambda ts: sum(t["state"] == "running" for t in ts) == 2)
    # Both tools have started (a task is running from its claim, its tool a moment later).
    fleet.wait_tasks(scan_id, lambda _: len(list(pid_dir.iterdir())) == 2)
    cancelled_at = time.monotonic()
    result = fleet.cli("scan", "cancel", scan_id, "--json")
    assert '"cancelled_tasks": 4' in result.stdout and '"stopping_tasks": 2' in result.stdout
    summary = fleet.wait_final(scan_id, timeout=30)
    took = time.monotonic() - cancelled_at
    assert summary["status"] == "cancelled"
    tasks = fleet.tasks(scan_id)
    assert {t["state"] for t in tasks} == {"cancelled"}, tasks
    ran = [t for t in tasks if t["started_at"]]
    assert len(ran) == 2, "queued tasks never ran"
    assert pids_alive(pid_dir) == [], "running tools were killed"
    assert len(list(pid_dir.iterdir())) == 2
    assert took < 15, f"cancellation took {took:.1f}s"
    _assert_exactly_once(fleet, scan_id, tasks)


def test_a_worker_killed_mid_task_loses_nothing_and_duplicates_nothing(
    fleet: Fleet, tmp_path: Path
) -> None:
    doomed = fleet.start_worker("doomed", 4)
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    scan_id = _sleep_scan(
        fleet,
        _targets("127.0.0.7", 4),
        3,
        "--max-concurrency",
        "4",
        pid_dir=pid_dir,
    )
    fleet.wait_tasks(scan_id, lambda ts: sum(t["state"] == "running" for t in ts) == 4)
    fleet.wait_tasks(scan_id, lambda ts: len(list(pid_dir.iterdir())) == 4)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    # Its tools die with it: they do not go on against the target while the retry runs.
    deadline = time.monotonic() + 5
    while pids_alive(pid_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pids_alive(pid_dir) == []
    fleet.start_worker("survivor", 4)
    summary = fleet.wait_final(scan_id, timeout=120)
    tasks = fleet.tasks(scan_id)
    assert summary["status"] == "completed", tasks
    for task in tasks:
        assert task["attempts"] == 2, task
        assert "lost" in task["last_error"], task
    assert len({t["worker"] for t in tasks}) == 1
    _assert_exactly_once(fleet, scan_id, tasks)
    # Retries and their last error are in `scanfleet tasks list`.
    table = fleet.cli("tasks", "list", "--scan", scan_id).stdout
    assert "lost" in table


def test_sigterm_hands_running_tasks_back_and_they_finish_elsewhere(fleet: Fleet) -> None:
    leaving = fleet.start_worker("leaving", 4)
    scan_id = _sleep_scan(
        fleet,
        _targets("127.0.0.8", 3),
        5,
        "--max-concurrency",
        "3",
    )
    fleet.wait_tasks(scan_id, lambda ts: sum(t["state"] == "running" for t in ts) == 3)
    leaving.send_signal(signal.SIGTERM)
    assert leaving.wait(timeout=60) == 0, fleet.logs()
    fleet.start_worker("staying", 4)
    summary = fleet.wait_final(scan_id, timeout=120)
    tasks = fleet.tasks(scan_id)
    assert summary["status"] == "completed", tasks
    for task in tasks:
        assert task["attempts"] == 2, task
        assert "shutting down" in task["last_error"], task
    _assert_exactly_once(fleet, scan_id, tasks)


def test_a_rabbitmq_restart_mid_scan_loses_and_duplicates_nothing(fleet: Fleet) -> None:
    fleet.start_worker("worker-a", 2)
    fleet.start_worker("worker-b", 2)
    scan_id = _sleep_scan(
        fleet,
        [*_targets("127.0.0.9", 4), *_targets("127.0.0.10", 4)],
        2,
        "--max-concurrency",
        "2",
    )
    fleet.wait_tasks(scan_id, lambda ts: any(t["state"] == "running" for t in ts))
    subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True, timeout=120)
    try:
        time.sleep(3)
    finally:
        subprocess.run(["rabbitmqctl", "-q", "start_app"], check=True, timeout=120)
    summary = fleet.wait_final(scan_id, timeout=240)
    tasks = fleet.tasks(scan_id)
    assert {t["state"] for t in tasks} <= FINAL
    assert summary["status"] == "completed", (tasks, fleet.logs())
    _assert_exactly_once(fleet, scan_id, tasks)


def test_a_scan_past_its_max_wall_time_is_cancelled(fleet: Fleet, tmp_path: Path) -> None:
    fleet.start_worker("worker", 2)
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    scan_id = _sleep_scan(
        fleet,
        _targets("127.0.0.11", 4),
        60,
        "--max-concurrency",
        "2",
        "--max-wall",
        "3",
        pid_dir=pid_dir,
    )
    summary = fleet.wait_final(scan_id, timeout=60)
    assert summary["status"] == "cancelled"
    assert "wall time" in summary["reason"]
    tasks = fleet.tasks(scan_id)
    assert {t["state"] for t in tasks} == {"cancelled"}
    assert sum(1 for t in tasks if t["started_at"]) == 2
    assert pids_alive(pid_dir) == []
