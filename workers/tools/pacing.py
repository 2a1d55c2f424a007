"""Pacing of built-in checks: at most ``rps`` new requests or connections per second."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class Pacer:
    """Hands out evenly spaced start times; ``rps=None`` means no limit.

    Each call to :meth:`reserve` books the next free slot and returns how long the caller
    must wait before using it, so concurrent callers never exceed the rate together.
    """

    def __init__(self, rps: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        if rps is not None and rps <= 0:
            raise ValueError(f"rps must be positive, not {rps}")
        self._interval = 0.0 if rps is None else 1.0 / rps
        self._clock = clock
        self._next = 0.0

    def reserve(self) -> float:
        """Book the next slot; the seconds to wait until it starts."""
        now = self._clock()
        start = max(now, self._next)
        self._next = start + self._interval
        return start - now

    def wait(self) -> None:
        delay = self.reserve()
        if delay > 0:
            time.sleep(delay)

    async def wait_async(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)
