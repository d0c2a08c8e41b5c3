"""The learning-rate schedule: by steps, or, where a run's time budget binds first, by time."""

import pytest
from glsr_train.config import Config
from glsr_train.loop import learning_rate


def schedule(decay_in_time: bool) -> Config:
    config = Config()
    config.train.lr, config.train.lr_final, config.train.warmup = 1e-3, 1e-4, 10
    config.train.max_steps, config.train.max_minutes = 1000, 10.0
    config.train.decay_in_time = decay_in_time
    return config


def test_a_run_whose_time_limit_binds_first_still_ends_at_the_final_rate():
    timed = schedule(decay_in_time=True)
    assert learning_rate(400, timed, seconds=600.0) == pytest.approx(1e-4)  # at the limit
    halfway = learning_rate(100, timed, seconds=300.0)  # the time is half gone, the steps not
    assert halfway == pytest.approx(5.5e-4)
    assert learning_rate(100, schedule(decay_in_time=False), seconds=300.0) > 9e-4


def test_steps_still_lead_when_they_run_out_before_the_time():
    timed = schedule(decay_in_time=True)
    by_steps = schedule(decay_in_time=False)
    for step in (0, 5, 505, 1000):
        assert learning_rate(step, timed, seconds=1.0) == learning_rate(step, by_steps)
    assert learning_rate(1000, timed, seconds=1.0) == pytest.approx(1e-4)
