"""The task: what a training step computes, and how the model and datasets are built from the config.

The runner owns the loop, distribution and checkpoints; the task owns the step and the loss
(``train_step`` / ``valid_step``) and the evaluation over a validation loader.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from minigpt4.common import dist_utils
from minigpt4.common.registry import registry

logger = logging.getLogger(__name__)


class BaseTask:
    """A training task built from a :class:`~minigpt4.common.config.Config`."""

    @classmethod
    def setup_task(cls, cfg: Any = None) -> BaseTask:
        """The task for ``cfg`` (the base task has no options of its own)."""
        del cfg
        return cls()

    def build_model(self, cfg: Any) -> nn.Module:
        """``registry.get_model_class(model.arch).from_config(cfg.model_cfg)``."""
        model_cfg = cfg.model_cfg
        model_cls = registry.get_model_class(model_cfg.arch)
        logger.info("building model %s (%s)", model_cfg.arch, model_cfg.model_type)
        return model_cls.from_config(model_cfg)

    def build_datasets(self, cfg: Any) -> dict[str, dict[str, Any]]:
        """``{dataset name: {split: dataset}}``, one builder per configured dataset.

        Raises:
            ValueError: when the config names no dataset.
        """
        datasets_cfg = cfg.datasets_cfg
        if len(datasets_cfg) == 0:
            raise ValueError(f"{cfg.cfg_path}: no datasets configured (add a 'datasets' section)")
        datasets: dict[str, dict[str, Any]] = {}
        for name, dataset_cfg in datasets_cfg.items():
            builder = registry.get_builder_class(name)(dataset_cfg)
            datasets[name] = builder.build_datasets()
            logger.info("dataset %s: splits %s", name, ", ".join(datasets[name]))
        return datasets

    def train_step(self, model: nn.Module, samples: dict[str, Any]) -> Tensor:
        """The training loss of one batch (a scalar)."""
        return model(samples)["loss"]

    def valid_step(self, model: nn.Module, samples: dict[str, Any]) -> Tensor:
        """The validation loss of one batch (a scalar)."""
        return model(samples)["loss"]

    @torch.no_grad()
    def evaluation(self, model: nn.Module, batches: Iterable[dict[str, Any]], device: torch.device) -> dict[str, float]:
        """Mean validation loss over ``batches`` (weighted by batch size, summed over every rank).

        Returns:
            ``{"loss": mean loss, "num_samples": samples seen on all ranks}``.
        """
        total = torch.zeros(2, dtype=torch.float64, device=device)  # [sum of loss * batch size, samples]
        for samples in batches:
            loss = self.valid_step(model, samples)
            size = batch_size_of(samples)
            total[0] += loss.detach().double() * size
            total[1] += size
        if dist_utils.is_dist_avail_and_initialized():
            torch.distributed.all_reduce(total)
        count = int(total[1].item())
        mean = (total[0] / total[1]).item() if count else float("nan")
        return {"loss": mean, "num_samples": count}


def batch_size_of(samples: dict[str, Any]) -> int:
    """The number of samples in a batch: the first dimension of its first tensor, else the first list's length."""
    for value in samples.values():
        if isinstance(value, Tensor) and value.dim() > 0:
            return int(value.shape[0])
    for value in samples.values():
        if isinstance(value, list | tuple):
            return len(value)
    raise ValueError(f"cannot tell the batch size of a batch with keys {sorted(samples)}")
