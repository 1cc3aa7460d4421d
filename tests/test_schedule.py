"""The learning-rate schedules (cosine annealing, with and without warm restarts)."""

from __future__ import annotations

import math

import pytest

from aeromamba.training.schedule import learning_rate


def test_constant_is_the_base_rate_at_every_step():
    assert {learning_rate(s, 3e-4, "constant", 10, 5, 1e-6) for s in (0, 10, 12, 10**6)} == {3e-4}


def test_cosine_holds_until_start_then_falls_to_the_floor_and_stays():
    rates = [learning_rate(s, 1.0, "cosine", start=100, period=200, lr_min=0.1) for s in range(400)]
    assert rates[:101] == [1.0] * 101
    assert rates[200] == pytest.approx(0.55), "half way: the mean of lr and lr_min"
    assert rates[150] == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 4)))
    assert all(a > b for a, b in zip(rates[100:300], rates[101:301], strict=True))
    assert rates[300:] == [0.1] * 100


def test_restarts_begin_again_every_period():
    rates = [learning_rate(s, 2.0, "restarts", start=0, period=50) for s in range(150)]
    assert rates[0] == rates[50] == rates[100] == 2.0
    assert rates[49] < 0.01 and rates[25] == pytest.approx(1.0)
    assert rates[10] == pytest.approx(rates[60]) == pytest.approx(rates[110])


def test_an_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="lr_schedule 'linear'"):
        learning_rate(0, 1.0, "linear")
