"""The optimizer (AdamW with the published parameter groups) and the learning-rate schedules, registered by name
for ``run.lr_sched``.

Both schedulers follow the published MiniGPT-4 recipe: a linear warmup from ``warmup_lr`` to ``init_lr`` over the
first ``warmup_steps`` *global* steps, then a per-epoch decay (half-cosine to ``min_lr`` over ``max_epoch``, or a
``decay_rate`` step per epoch), as in LAVIS (``lavis/common/optims.py``). The runner calls
``scheduler.step(cur_epoch, cur_step)`` before every iteration, where ``cur_step`` counts iterations from the
start of the epoch; the global step is ``cur_epoch * iters_per_epoch + cur_step``. With the published configs
(``warmup_steps == iters_per_epoch``) this equals LAVIS value for value; a warmup longer than an epoch goes on into
the next epoch instead of being cut short. The schedules are pure functions of
``(cur_epoch, cur_step)``, so resuming needs no scheduler state; ``state_dict()`` still records the last position
and the hyper-parameters, and ``load_state_dict()`` warns when the configured hyper-parameters changed.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from minigpt4.common.registry import registry

logger = logging.getLogger(__name__)

_HPARAMS = ("max_epoch", "iters_per_epoch", "min_lr", "init_lr", "warmup_steps", "warmup_start_lr", "decay_rate")


def warmup_lr(step: int, warmup_steps: int, start_lr: float, max_lr: float) -> float:
    """Linear warmup from ``start_lr`` towards ``max_lr``, capped at ``max_lr``: LAVIS ``warmup_lr_schedule``."""
    return min(max_lr, start_lr + (max_lr - start_lr) * step / max(warmup_steps, 1))


def cosine_lr(epoch: int, max_epoch: int, init_lr: float, min_lr: float) -> float:
    """Half-cosine decay from ``init_lr`` (epoch 0) to ``min_lr`` (epoch ``max_epoch``): LAVIS ``cosine_lr_schedule``."""
    return (init_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * epoch / max_epoch)) + min_lr


def step_lr(epoch: int, init_lr: float, min_lr: float, decay_rate: float) -> float:
    """``init_lr * decay_rate ** epoch``, floored at ``min_lr``: LAVIS ``step_lr_schedule``."""
    return max(min_lr, init_lr * decay_rate**epoch)


class _LinearWarmupScheduler:
    """Shared constructor, LR setting and state of the two schedules.

    Args:
        optimizer: its param groups all get the same LR.
        max_epoch: number of epochs.
        iters_per_epoch: iterations per epoch (turns ``(epoch, step)`` into a global step for the warmup).
        min_lr: the LR floor.
        init_lr: the peak LR (reached at the end of warmup).
        warmup_steps: length of the linear warmup, in global iterations.
        warmup_start_lr: the LR at step 0 of the warmup; < 0 means ``init_lr`` (no warmup).
        decay_rate: per-epoch multiplier (step schedule only).
        **kwargs: ignored (LAVIS passes the whole ``run`` section).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        max_epoch: int,
        iters_per_epoch: int | None,
        min_lr: float,
        init_lr: float,
        warmup_steps: int = 0,
        warmup_start_lr: float = -1,
        decay_rate: float = 1,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            logger.debug("%s ignores %s", type(self).__name__, sorted(kwargs))
        self.optimizer = optimizer
        self.max_epoch = max_epoch
        self.iters_per_epoch = iters_per_epoch
        self.min_lr = min_lr
        self.init_lr = init_lr
        self.warmup_steps = warmup_steps
        self.warmup_start_lr = warmup_start_lr if warmup_start_lr >= 0 else init_lr
        self.decay_rate = decay_rate
        self.last_epoch = -1
        self.last_step = -1
        self.last_lr: float | None = None

    def global_step(self, cur_epoch: int, cur_step: int) -> int:
        """Iterations since the start of training (``cur_step`` alone when epochs have no fixed length)."""
        if self.iters_per_epoch is None:
            return cur_step if cur_epoch == 0 else self.warmup_steps + cur_step
        return cur_epoch * self.iters_per_epoch + cur_step

    def get_lr(self, cur_epoch: int, cur_step: int) -> float:
        step = self.global_step(cur_epoch, cur_step)
        if step < self.warmup_steps:
            return warmup_lr(step, self.warmup_steps, self.warmup_start_lr, self.init_lr)
        return self.decayed_lr(cur_epoch)

    def decayed_lr(self, cur_epoch: int) -> float:
        raise NotImplementedError

    def step(self, cur_epoch: int, cur_step: int) -> float:
        """Set every param group's LR for iteration ``cur_step`` of epoch ``cur_epoch``; returns the LR."""
        lr = self.get_lr(cur_epoch, cur_step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.last_epoch, self.last_step, self.last_lr = cur_epoch, cur_step, lr
        return lr

    def state_dict(self) -> dict[str, Any]:
        state = {name: getattr(self, name) for name in _HPARAMS}
        state.update(last_epoch=self.last_epoch, last_step=self.last_step, last_lr=self.last_lr)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the last position (and its LR in the optimizer); the configured hyper-parameters win."""
        changed = [name for name in _HPARAMS if name in state and state[name] != getattr(self, name)]
        if changed:
            logger.warning(
                "LR schedule differs from the checkpoint's (%s); using the configured values",
                ", ".join(f"{n}: {state[n]} -> {getattr(self, n)}" for n in changed),
            )
        self.last_epoch = state.get("last_epoch", -1)
        self.last_step = state.get("last_step", -1)
        self.last_lr = state.get("last_lr")
        if self.last_epoch >= 0:
            self.step(self.last_epoch, self.last_step)


@registry.register_lr_scheduler("linear_warmup_cosine_lr")
class LinearWarmupCosineLRScheduler(_LinearWarmupScheduler):
    """Linear warmup over the first ``warmup_steps`` global steps, then a per-epoch half-cosine.

    - global step ``s < warmup_steps``: ``lr = warmup_start_lr + (init_lr - warmup_start_lr) * s / warmup_steps``;
    - afterwards: ``lr = (init_lr - min_lr) * 0.5 * (1 + cos(pi * cur_epoch / max_epoch)) + min_lr``, constant
      within an epoch (``init_lr`` for the rest of epoch 0).
    """

    def decayed_lr(self, cur_epoch: int) -> float:
        return cosine_lr(cur_epoch, self.max_epoch, self.init_lr, self.min_lr)


@registry.register_lr_scheduler("linear_warmup_step_lr")
class LinearWarmupStepLRScheduler(_LinearWarmupScheduler):
    """Linear warmup over the first ``warmup_steps`` global steps, then ``max(min_lr, init_lr * decay_rate ** epoch)``.

    The warmup is that of :class:`LinearWarmupCosineLRScheduler`; after it the LR is constant within an epoch.
    """

    def decayed_lr(self, cur_epoch: int) -> float:
        return step_lr(cur_epoch, self.init_lr, self.min_lr, self.decay_rate)


def build_lr_scheduler(run_cfg: Any, optimizer: Optimizer, iters_per_epoch: int | None) -> _LinearWarmupScheduler:
    """The scheduler named by ``run.lr_sched``, configured from the ``run`` section.

    Reads ``init_lr``, ``min_lr``, ``warmup_lr`` (-> ``warmup_start_lr``), ``warmup_steps``, ``decay_rate`` (None:
    1, no decay) and ``max_epoch``.

    Args:
        run_cfg: the validated ``run`` section.
        optimizer: the optimizer whose LR is scheduled.
        iters_per_epoch: iterations per epoch as the runner determined it.
    """
    cls = registry.get_lr_scheduler_class(run_cfg.lr_sched)
    return cls(
        optimizer=optimizer,
        max_epoch=run_cfg.max_epoch,
        iters_per_epoch=iters_per_epoch,
        min_lr=run_cfg.min_lr,
        init_lr=run_cfg.init_lr,
        warmup_steps=run_cfg.warmup_steps,
        warmup_start_lr=run_cfg.warmup_lr,
        decay_rate=1.0 if run_cfg.decay_rate is None else run_cfg.decay_rate,
    )


def build_optimizer(model: nn.Module, run_cfg: Any) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; weight decay on >= 2-d weights only (none on biases, norms or other
    1-d parameters). Reads ``run.init_lr``, ``run.weight_decay`` and ``run.beta2``.

    Raises:
        ValueError: the model has no trainable parameter.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or name.endswith(".bias") else decay).append(param)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters")
    num = sum(p.numel() for p in decay + no_decay)
    logger.info("trainable parameters: %d (%d tensors with weight decay, %d without)", num, len(decay), len(no_decay))
    groups = [
        {"params": decay, "weight_decay": float(run_cfg.weight_decay)},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    groups = [group for group in groups if group["params"]]
    return torch.optim.AdamW(groups, lr=float(run_cfg.init_lr), betas=(0.9, float(run_cfg.beta2)))
