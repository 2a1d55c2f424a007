"""Budgets: profiles, per-scan overrides, scope ceilings, classes; the admission split of a
target's slots and rate; retry backoff; the config file."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contracts.errors import ConfigError
from contracts.scan import BudgetOverride
from coordinator.budgets import BUILTIN_PROFILES, Budget, BudgetPolicy, FleetConfig
from coordinator.scan_command import tool_options
from coordinator.settings import ScanSettings
from coordinator.transport import task_actor_name, task_queue
from storage.leases import RetryPolicy, _Held, _plan_target, retry_or_fail
from storage.models import Task

CONFIG = """
[profiles.nightly]
max_concurrency = 8
rps = 200
max_runtime_s = 900

[scope]
allow = ["127.0.0.0/8", "*.lab.test"]
deny = ["127.0.0.53"]

[[scope.budgets]]
match = "127.0.0.0/8"
max_concurrency = 6

[[scope.budgets]]
match = "127.0.0.2/32"
max_concurrency = 1
rps = 2

[[scope.budgets]]
match = "*.lab.test"
rps = 20

[[scope.budgets]]
match = "fragile.lab.test"
max_runtime_s = 60
"""


@pytest.fixture
def config(tmp_path: Path) -> FleetConfig:
    path = tmp_path / "scanfleet.toml"
    path.write_text(CONFIG)
    return FleetConfig.load(path)


def test_profiles_come_built_in_and_from_the_config(config: FleetConfig) -> None:
    assert config.profile("default") == BUILTIN_PROFILES["default"]
    assert config.profile("gentle").max_concurrency == 1
    assert config.profile("nightly") == Budget(max_concurrency=8, rps=200, max_runtime_s=900)
    with pytest.raises(ConfigError, match=r"unknown budget profile 'weekly'.*nightly"):
        config.profile("weekly")


def test_cli_overrides_replace_profile_values_and_leave_the_rest() -> None:
    policy = BudgetPolicy.for_scan(
        FleetConfig(), "default", BudgetOverride(rps=10, max_runtime_s=30)
    )
    assert policy.base == Budget(max_concurrency=4, rps=10, max_runtime_s=30)


@pytest.mark.parametrize(
    ("target", "addresses", "expected"),
    [
        # /8 rule: concurrency capped at 6; rps of the profile (200) stays.
        ("127.0.0.9", (), Budget(max_concurrency=6, rps=200, max_runtime_s=900)),
        # /32 is more specific than /8: both of its ceilings apply, not the /8's.
        ("127.0.0.2", (), Budget(max_concurrency=1, rps=2, max_runtime_s=900)),
        # A name matched by its resolved address.
        ("app.example.test", ("127.0.0.2",), Budget(max_concurrency=1, rps=2, max_runtime_s=900)),
        # Wildcard, and an exact name beating the wildcard.
        ("www.lab.test", (), Budget(max_concurrency=8, rps=20, max_runtime_s=900)),
        ("fragile.lab.test", (), Budget(max_concurrency=8, rps=200, max_runtime_s=60)),
        # No rule: the profile as it is.
        ("10.9.9.9", (), Budget(max_concurrency=8, rps=200, max_runtime_s=900)),
    ],
)
def test_scope_rules_are_ceilings_and_the_most_specific_applies(
    config: FleetConfig, target: str, addresses: tuple[str, ...], expected: Budget
) -> None:
    policy = BudgetPolicy.for_scan(config, "nightly", None)
    assert policy.for_target(target, addresses) == expected


def test_a_ceiling_never_raises_a_budget(config: FleetConfig) -> None:
    policy = BudgetPolicy.for_scan(config, "gentle", BudgetOverride(max_concurrency=1))
    assert policy.for_target("127.0.0.9").max_concurrency == 1
    assert policy.for_target("www.lab.test").rps == 5


def test_budget_class_separates_slow_targets() -> None:
    assert Budget(max_concurrency=4, rps=50).budget_class == "standard"
    assert Budget(max_concurrency=4, rps=8).budget_class == "slow"  # 2 requests/s a task
    assert Budget(max_runtime_s=3600).budget_class == "slow"
    assert task_queue("web", "slow") == "scanfleet.tasks.web.slow"
    assert task_actor_name("web", "slow") == "scanfleet_task_web_slow"


def test_the_config_file_is_validated(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[profiles.x]\nmax_concurrency = 0\n")
    with pytest.raises(ConfigError, match="max_concurrency"):
        FleetConfig.load(bad)
    bad.write_text("[profiles.x\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        FleetConfig.load(bad)
    bad.write_text("[sope]\nallow = []\n")
    with pytest.raises(ConfigError, match="sope"):
        FleetConfig.load(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        FleetConfig.load(tmp_path / "missing.toml")


def test_the_config_scope_and_its_denylist_feed_the_scope(tmp_path: Path) -> None:
    path = tmp_path / "scanfleet.toml"
    path.write_text(CONFIG)
    assert ScanSettings(config=path).scope_entries() == [
        "127.0.0.0/8",
        "*.lab.test",
        "!127.0.0.53",
    ]
    # An explicit scope replaces the allowlist; the configured denylist still applies.
    assert ScanSettings(config=path, scope=["10.0.0.0/8"]).scope_entries() == [
        "10.0.0.0/8",
        "!127.0.0.53",
    ]


def test_retry_backoff_is_exponential_and_capped() -> None:
    settings = ScanSettings(retry_backoff_s=2, retry_backoff_max_s=10)
    assert [settings.backoff(n).total_seconds() for n in (1, 2, 3, 4, 5)] == [2, 4, 8, 10, 10]


def test_task_time_limits_stay_under_the_consumer_timeout() -> None:
    settings = ScanSettings(broker_consumer_timeout_s=1800)
    # A prefetched task may wait one runtime, then run one, unacked.
    assert 2 * (settings.max_task_runtime_s + 60) <= 1800
    assert ScanSettings(broker_consumer_timeout_s=60, retry_backoff_max_s=600).backoff(
        20
    ) <= timedelta(seconds=60)


def _task(rps: float | None = 10.0, limit: int = 2) -> Task:
    return Task(id=uuid.uuid4(), rps=rps, max_concurrency=limit, attempts=0)


def test_admission_fills_free_slots_and_splits_the_rate() -> None:
    waiting = [_task() for _ in range(5)]
    granted = _plan_target(waiting, _Held())
    assert [task for task, _ in granted] == waiting[:2]
    assert [rps for _, rps in granted] == [5.0, 5.0]


def test_a_lone_task_gets_the_whole_rate_and_the_next_waits_for_it() -> None:
    (only,) = _plan_target([_task()], _Held())
    assert only[1] == 10.0
    # The target's whole rate is allocated: a second task waits though a slot is free.
    assert _plan_target([_task()], _Held(count=1, rps=10.0)) == []


def test_admission_gives_what_is_unallocated_in_equal_shares() -> None:
    granted = _plan_target([_task(limit=4) for _ in range(4)], _Held(count=1, rps=2.5))
    assert [rps for _, rps in granted] == [2.5, 2.5, 2.5]
    assert sum(rps for _, rps in granted) + 2.5 == pytest.approx(10.0)


def test_no_admission_when_the_slots_are_taken() -> None:
    assert _plan_target([_task()], _Held(count=2, rps=5.0)) == []
    unlimited = _plan_target([_task(rps=None, limit=3) for _ in range(5)], _Held(count=1))
    assert [rps for _, rps in unlimited] == [None, None]


def test_tool_options_from_the_command_line() -> None:
    assert tool_options("22,80", ["test-sleep.seconds=0.5", "nmap.scripts=default"]) == {
        "nmap": {"ports": "22,80", "scripts": "default"},
        "tcp-ports": {"ports": "22,80"},
        "test-sleep": {"seconds": 0.5},
    }
    assert tool_options(None, []) is None
    with pytest.raises(ConfigError, match=r"TOOL\.KEY=VALUE"):
        tool_options(None, ["seconds=1"])


def test_transient_failures_are_retried_with_backoff_until_attempts_run_out() -> None:
    policy = RetryPolicy(max_attempts=3, backoff=ScanSettings(retry_backoff_s=2).backoff)
    now = datetime(2026, 11, 21, tzinfo=UTC)
    task = Task(status="running", attempts=1, lease_expires_at=now, rps_allocated=5.0)
    assert retry_or_fail(task, "worker w1 lost: lease expired", now, policy)
    assert (task.status, task.not_before, task.last_error) == (
        "pending",
        now + timedelta(seconds=2),
        "worker w1 lost: lease expired",
    )
    assert task.lease_expires_at is None and task.rps_allocated is None
    task.status, task.attempts = "running", 2
    assert retry_or_fail(task, "broker unreachable", now, policy)
    assert task.not_before == now + timedelta(seconds=4)
    task.status, task.attempts = "running", 3
    assert not retry_or_fail(task, "broker unreachable", now, policy)
    assert task.status == "failed"
    assert task.reason == "gave up after 3 attempts: broker unreachable"


def test_a_hand_back_is_no_failure_it_waits_for_nothing() -> None:
    policy = RetryPolicy(max_attempts=1, backoff=ScanSettings().backoff)
    now = datetime(2026, 11, 21, tzinfo=UTC)
    task = Task(status="running", attempts=1)
    assert retry_or_fail(task, "handed back", now, policy, failure=False)
    assert (task.status, task.not_before) == ("pending", None)
