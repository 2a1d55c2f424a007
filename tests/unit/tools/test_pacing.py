"""The pacer spaces starts 1/rps apart, and not at all without a rate."""

from __future__ import annotations

import pytest

from workers.tools.pacing import Pacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_consecutive_reservations_are_spaced_by_the_interval() -> None:
    clock = FakeClock()
    pacer = Pacer(4.0, clock=clock)
    assert [pacer.reserve() for _ in range(4)] == [0.0, 0.25, 0.5, 0.75]


def test_time_that_passed_counts_toward_the_next_slot() -> None:
    clock = FakeClock()
    pacer = Pacer(2.0, clock=clock)
    assert pacer.reserve() == 0.0
    clock.now += 0.2
    assert pacer.reserve() == pytest.approx(0.3)
    clock.now += 10
    assert pacer.reserve() == 0.0


def test_no_rate_means_no_wait() -> None:
    pacer = Pacer(None, clock=FakeClock())
    assert {pacer.reserve() for _ in range(100)} == {0.0}


@pytest.mark.parametrize("rps", [0, -1.5])
def test_a_rate_must_be_positive(rps: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        Pacer(rps)
