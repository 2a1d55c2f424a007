"""The dramatiq actors: one per tool pool and budget class, each on its own queue."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import dramatiq

from contracts.task import TaskMessage
from coordinator.transport import task_actor_name, task_queue


def register_actors(
    broker: dramatiq.Broker,
    run_task: Callable[[TaskMessage], Any],
    queues: Iterable[tuple[str, str]],
) -> list[dramatiq.Actor]:  # type: ignore[type-arg]
    actors = []
    for pool, budget_class in queues:

        def actor_fn(payload: dict[str, Any]) -> None:
            run_task(TaskMessage.model_validate(payload))

        actor_fn.__name__ = task_actor_name(pool, budget_class)
        actors.append(
            dramatiq.actor(
                actor_name=task_actor_name(pool, budget_class),
                queue_name=task_queue(pool, budget_class),
                broker=broker,
                max_retries=0,
            )(actor_fn)
        )
    return actors
