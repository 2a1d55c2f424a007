"""Helpers shared by the tool integration tests."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from workers.tools.pacing import Pacer


class RecordingPacer(Pacer):
    """A real pacer that also counts the slots it hands out."""

    created: list[RecordingPacer] = []

    def __init__(self, rps: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(rps, clock)
        self.rps = rps
        self.reservations = 0
        RecordingPacer.created.append(self)

    def reserve(self) -> float:
        self.reservations += 1
        return super().reserve()


@pytest.fixture
def recording_pacer(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], list[RecordingPacer]]:
    """Replace the Pacer of the named tool module; returns the pacers it then creates."""
    RecordingPacer.created = []

    def install(module: str) -> list[RecordingPacer]:
        monkeypatch.setattr(f"{module}.Pacer", RecordingPacer)
        return RecordingPacer.created

    return install
