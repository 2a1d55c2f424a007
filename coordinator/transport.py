"""The task transport: dramatiq on RabbitMQ for the fleet, its StubBroker embedded.

Tasks travel as dramatiq messages on ``scanfleet.tasks.<pool>.<budget class>`` whose
single argument is the ``TaskMessage`` as JSON, so any dramatiq worker with the actor can
run them. Slow-budget targets have queues of their own, so their tasks never hold back
fast ones (and workers can be dedicated to a class).
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker

from contracts.task import TaskMessage
from coordinator.budgets import BUDGET_CLASSES
from coordinator.settings import TIME_LIMIT_MARGIN_S

TASK_QUEUE_PREFIX = "scanfleet.tasks."
POOLS = ("default", "network", "web")


def task_queue(pool: str, budget_class: str = "standard") -> str:
    return f"{TASK_QUEUE_PREFIX}{pool}.{budget_class}"


def task_actor_name(pool: str, budget_class: str = "standard") -> str:
    return f"scanfleet_task_{pool}_{budget_class}"


def queues(
    pools: tuple[str, ...] | list[str] = POOLS,
    classes: tuple[str, ...] | list[str] = BUDGET_CLASSES,
) -> list[tuple[str, str]]:
    return [(pool, budget_class) for pool in pools for budget_class in classes]


def task_message(task: TaskMessage) -> dramatiq.Message:  # type: ignore[type-arg]
    return dramatiq.Message(
        queue_name=task_queue(task.pool, task.budget_class),
        actor_name=task_actor_name(task.pool, task.budget_class),
        args=(task.model_dump(mode="json"),),
        kwargs={},
        options={"time_limit": (task.time_limit_s + TIME_LIMIT_MARGIN_S) * 1000, "max_retries": 0},
    )


def rabbitmq_broker(url: str) -> RabbitmqBroker:
    return RabbitmqBroker(url=url, confirm_delivery=True)


def stub_broker() -> StubBroker:
    return StubBroker()
