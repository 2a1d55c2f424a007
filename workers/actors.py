"""The dramatiq actors: one per tool pool, each on its own ``scanfleet.tasks.<pool>`` queue."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import dramatiq

from contracts.task import TaskMessage
from coordinator.transport import POOLS, task_actor_name, task_queue


def register_actors(
    broker: dramatiq.Broker,
    run_task: Callable[[TaskMessage], Any],
    pools: Iterable[str] = POOLS,
) -> list[dramatiq.Actor]:  # type: ignore[type-arg]
    actors = []
    for pool in pools:

        def actor_fn(payload: dict[str, Any]) -> None:
            run_task(TaskMessage.model_validate(payload))

        actor_fn.__name__ = task_actor_name(pool)
        actors.append(
            dramatiq.actor(
                actor_name=task_actor_name(pool),
                queue_name=task_queue(pool),
                broker=broker,
                max_retries=0,
            )(actor_fn)
        )
    return actors
