"""The task transport: dramatiq on RabbitMQ for the fleet, its StubBroker embedded.

Tasks travel as dramatiq messages on ``scanfleet.tasks.<pool>`` whose single argument
is the ``TaskMessage`` as JSON, so any dramatiq worker with the actor can run them.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker

from contracts.task import TaskMessage

TASK_QUEUE_PREFIX = "scanfleet.tasks."
POOLS = ("default", "network", "web")


def task_queue(pool: str) -> str:
    return f"{TASK_QUEUE_PREFIX}{pool}"


def task_actor_name(pool: str) -> str:
    return f"scanfleet_task_{pool}"


def task_message(task: TaskMessage) -> dramatiq.Message:  # type: ignore[type-arg]
    return dramatiq.Message(
        queue_name=task_queue(task.pool),
        actor_name=task_actor_name(task.pool),
        args=(task.model_dump(mode="json"),),
        kwargs={},
        options={"time_limit": (task.time_limit_s + 30) * 1000, "max_retries": 0},
    )


def rabbitmq_broker(url: str) -> RabbitmqBroker:
    return RabbitmqBroker(url=url, confirm_delivery=True)


def stub_broker() -> StubBroker:
    return StubBroker()
