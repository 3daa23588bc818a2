"""LR schedules: exact values of the published LAVIS formulas at chosen steps."""

import logging
import math

import pytest
import torch
from omegaconf import OmegaConf

import minigpt4  # noqa: F401  (registers the schedulers)
from minigpt4.common.optims import (
    LinearWarmupCosineLRScheduler,
    LinearWarmupStepLRScheduler,
    build_lr_scheduler,
)
from minigpt4.common.registry import registry
from minigpt4.common.run_config import RunConfig

# the published MiniGPT-4 stage-1 schedule
INIT_LR, MIN_LR, WARMUP_LR, WARMUP_STEPS, MAX_EPOCH, ITERS = 1e-4, 8e-5, 1e-6, 5000, 4, 5000


def _optimizer(groups: int = 2) -> torch.optim.Optimizer:
    params = [[torch.nn.Parameter(torch.zeros(1))] for _ in range(groups)]
    return torch.optim.AdamW([{"params": p} for p in params], lr=123.0)


def _cosine(**overrides) -> LinearWarmupCosineLRScheduler:
    kwargs = dict(
        max_epoch=MAX_EPOCH,
        iters_per_epoch=ITERS,
        min_lr=MIN_LR,
        init_lr=INIT_LR,
        warmup_steps=WARMUP_STEPS,
        warmup_start_lr=WARMUP_LR,
    )
    kwargs.update(overrides)
    return LinearWarmupCosineLRScheduler(_optimizer(), **kwargs)


def _cos_value(epoch: int) -> float:
    return (INIT_LR - MIN_LR) * 0.5 * (1.0 + math.cos(math.pi * epoch / MAX_EPOCH)) + MIN_LR


@pytest.mark.parametrize(
    ("epoch", "step", "expected"),
    [
        (0, 0, WARMUP_LR),  # first warmup step
        (0, 1, WARMUP_LR + (INIT_LR - WARMUP_LR) / WARMUP_STEPS),
        (0, 2500, 5.05e-5),  # halfway
        (0, WARMUP_STEPS - 1, WARMUP_LR + (INIT_LR - WARMUP_LR) * (WARMUP_STEPS - 1) / WARMUP_STEPS),
        (0, WARMUP_STEPS, INIT_LR),  # warmup boundary: capped at init_lr
        (0, WARMUP_STEPS + 700, INIT_LR),  # the rest of epoch 0 stays at init_lr
        (1, 0, _cos_value(1)),
        (1, 4999, _cos_value(1)),  # constant within an epoch
        (2, 17, _cos_value(2)),
        (MAX_EPOCH - 1, ITERS - 1, _cos_value(MAX_EPOCH - 1)),  # last step of the last epoch
        (MAX_EPOCH, 0, MIN_LR),  # one past the end reaches min_lr
    ],
)
def test_cosine_values(epoch, step, expected):
    sched = _cosine()
    lr = sched.step(epoch, step)
    assert lr == pytest.approx(expected, rel=1e-12)
    assert [g["lr"] for g in sched.optimizer.param_groups] == [lr, lr]


def test_cosine_known_numbers():
    sched = _cosine()
    assert sched.step(1, 0) == pytest.approx(9.707106781186548e-05, rel=1e-12)
    assert sched.step(2, 0) == pytest.approx(9e-05, rel=1e-12)
    assert sched.step(3, 0) == pytest.approx(8.292893218813453e-05, rel=1e-12)


def test_warmup_counts_global_steps_across_epochs():
    # the warmup spans the first warmup_steps global steps, even when longer than an epoch
    sched = _cosine(iters_per_epoch=10, warmup_steps=25)
    assert sched.step(0, 9) == pytest.approx(WARMUP_LR + (INIT_LR - WARMUP_LR) * 9 / 25, rel=1e-12)
    assert sched.step(1, 0) == pytest.approx(WARMUP_LR + (INIT_LR - WARMUP_LR) * 10 / 25, rel=1e-12)
    assert sched.step(2, 4) == pytest.approx(WARMUP_LR + (INIT_LR - WARMUP_LR) * 24 / 25, rel=1e-12)
    # then the per-epoch cosine of the epoch the warmup ended in
    assert sched.step(2, 5) == pytest.approx(_cos_value(2), rel=1e-12)
    assert sched.step(2, 9) == pytest.approx(_cos_value(2), rel=1e-12)


def test_no_warmup_lr_means_init_lr():
    sched = _cosine(warmup_start_lr=-1)
    assert sched.step(0, 0) == INIT_LR
    assert sched.step(0, 3) == INIT_LR


def test_zero_warmup_steps_means_no_warmup():
    sched = _cosine(warmup_steps=0)
    assert sched.step(0, 0) == INIT_LR
    assert sched.step(0, 1) == INIT_LR


@pytest.mark.parametrize(
    ("epoch", "step", "expected"),
    [
        (0, 0, 1e-6),
        (0, 5, 1e-6 + (1e-4 - 1e-6) * 5 / 10),
        (0, 10, 1e-4),
        (0, 99, 1e-4),
        (1, 0, 5e-5),
        (2, 3, 2.5e-5),
        (3, 0, 1.25e-5),
        (4, 0, 1e-5),  # 6.25e-6 floored at min_lr
        (9, 99, 1e-5),
    ],
)
def test_step_values(epoch, step, expected):
    sched = LinearWarmupStepLRScheduler(
        _optimizer(),
        max_epoch=10,
        iters_per_epoch=100,
        min_lr=1e-5,
        init_lr=1e-4,
        warmup_steps=10,
        warmup_start_lr=1e-6,
        decay_rate=0.5,
    )
    assert sched.step(epoch, step) == pytest.approx(expected, rel=1e-12)
    assert all(g["lr"] == pytest.approx(expected, rel=1e-12) for g in sched.optimizer.param_groups)


def test_registered_names():
    assert registry.get_lr_scheduler_class("linear_warmup_cosine_lr") is LinearWarmupCosineLRScheduler
    assert registry.get_lr_scheduler_class("linear_warmup_step_lr") is LinearWarmupStepLRScheduler


def test_extra_kwargs_are_ignored():
    sched = LinearWarmupCosineLRScheduler(
        _optimizer(), max_epoch=2, iters_per_epoch=3, min_lr=0.0, init_lr=1.0, batch_size_train=4
    )
    assert sched.step(1, 0) == pytest.approx(0.5)


def test_build_lr_scheduler_reads_run_config():
    run = OmegaConf.merge(
        OmegaConf.structured(RunConfig),
        {
            "lr_sched": "linear_warmup_step_lr",
            "init_lr": 3e-5,
            "min_lr": 1e-5,
            "warmup_lr": 1e-6,
            "warmup_steps": 200,
            "decay_rate": 0.9,
            "max_epoch": 5,
        },
    )
    sched = build_lr_scheduler(run, _optimizer(), iters_per_epoch=200)
    assert isinstance(sched, LinearWarmupStepLRScheduler)
    assert (sched.init_lr, sched.min_lr, sched.warmup_start_lr, sched.warmup_steps) == (3e-5, 1e-5, 1e-6, 200)
    assert (sched.decay_rate, sched.max_epoch, sched.iters_per_epoch) == (0.9, 5, 200)
    assert sched.step(2, 0) == pytest.approx(3e-5 * 0.81)


def test_build_lr_scheduler_defaults_no_decay():
    run = OmegaConf.structured(RunConfig)  # cosine, decay_rate None
    sched = build_lr_scheduler(run, _optimizer(), iters_per_epoch=None)
    assert isinstance(sched, LinearWarmupCosineLRScheduler)
    assert sched.decay_rate == 1.0
    assert sched.warmup_start_lr == run.init_lr  # warmup_lr < 0: no warmup


def test_state_dict_round_trip_restores_lr():
    sched = _cosine()
    sched.step(2, 10)
    state = sched.state_dict()
    fresh = _cosine()
    fresh.load_state_dict(state)
    assert (fresh.last_epoch, fresh.last_step) == (2, 10)
    assert [g["lr"] for g in fresh.optimizer.param_groups] == [pytest.approx(_cos_value(2))] * 2


def test_load_state_dict_warns_on_changed_hyperparameters(caplog):
    state = _cosine().state_dict()
    changed = _cosine(init_lr=2e-4)
    with caplog.at_level(logging.WARNING, logger="minigpt4.common.optims"):
        changed.load_state_dict(state)
    assert "init_lr" in caplog.text
    assert changed.init_lr == 2e-4  # the configured value wins
