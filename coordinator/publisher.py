"""Publishing tasks to RabbitMQ with publisher confirms awaited per window.

Each chunk of the streamed plan is published as one window: every message is sent,
then all their confirms are awaited together (aio-pika on an event loop of its own),
so a 100,000-task scan does not wait one round trip per task. Queues are declared the
way dramatiq declares them, so ``scanfleet worker`` (dramatiq) consumes them as they are.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import aio_pika
import dramatiq

from contracts.errors import TransientError
from contracts.task import TaskMessage
from coordinator.transport import rabbitmq_broker, task_message


class WindowedTaskPublisher:
    def __init__(self, broker_url: str) -> None:
        self._url = broker_url
        self._broker = rabbitmq_broker(broker_url)
        self._declared: set[str] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name="task-publisher"
        )
        self._thread.start()
        self._channel: Any = None
        self._connection: Any = None

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    async def _open(self) -> Any:
        if self._channel is None or self._channel.is_closed:
            self._connection = await aio_pika.connect_robust(self._url)
            self._channel = await self._connection.channel(publisher_confirms=True)
        return self._channel

    async def _publish(self, messages: Sequence[dramatiq.Message]) -> None:  # type: ignore[type-arg]
        channel = await self._open()
        exchange = channel.default_exchange
        await asyncio.gather(
            *(
                exchange.publish(
                    aio_pika.Message(
                        message.encode(),
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        content_type="application/json",
                    ),
                    routing_key=message.queue_name,
                )
                for message in messages
            )
        )

    def publish(self, tasks: Sequence[TaskMessage]) -> None:
        messages = [task_message(task) for task in tasks]
        for queue in {m.queue_name for m in messages} - self._declared:
            self._broker.declare_queue(queue, ensure=True)
            self._declared.add(queue)
        try:
            self._run(self._publish(messages))
        except (aio_pika.exceptions.AMQPException, OSError) as exc:
            raise TransientError(f"publishing tasks failed: {exc}") from exc

    def close(self) -> None:
        async def close() -> None:
            if self._connection is not None:
                await self._connection.close()

        self._run(close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._broker.close()
