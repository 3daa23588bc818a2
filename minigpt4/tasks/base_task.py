"""The task: what a training step computes, and how the model and datasets are built from the config.

The runner owns the loop, distribution and checkpoints; the task owns the step and the loss
(``train_step`` / ``valid_step``) and the evaluation over a validation split (a token-weighted mean loss).
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
            builder = registry.get_builder_class(name)(dataset_cfg, name=name)
            datasets[name] = builder.build_datasets()
            logger.info("dataset %s: splits %s", name, ", ".join(datasets[name]))
        return datasets

    def train_step(self, model: nn.Module, samples: dict[str, Any]) -> Tensor:
        """The training loss of one batch (a scalar)."""
        return model(samples)["loss"]

    def valid_step(self, model: nn.Module, samples: dict[str, Any]) -> dict[str, Tensor]:
        """The model's output on one validation batch: ``loss`` and, when the model reports it, ``num_tokens``
        (how many tokens ``loss`` is the mean over)."""
        return model(samples)

    @torch.no_grad()
    def evaluation(self, model: nn.Module, batches: Iterable[dict[str, Any]], device: torch.device) -> dict[str, float]:
        """The mean validation loss over every sample of ``batches``, summed over every rank.

        Each batch's loss is weighted by the number of tokens it averages over when the model reports
        ``num_tokens`` (MiniGPT-4 does: the result is the token-weighted mean over the whole split, the same for
        any batch size and number of ranks), else by its number of samples. Collective under DDP: every rank
        calls it, with its own share of the batches (possibly none).

        Returns:
            ``{"loss": mean loss, "num_samples": samples on all ranks}`` plus ``"num_tokens"`` (tokens on all
            ranks) when the model reports them.
        """
        # [sum of loss * weight, weight, samples, batches, batches without num_tokens]
        total = torch.zeros(5, dtype=torch.float64, device=device)
        for samples in batches:
            out = self.valid_step(model, samples)
            size = batch_size_of(samples)
            tokens = out.get("num_tokens")
            weight = float(tokens) if tokens is not None else size
            if weight:  # a batch with no answer token has a NaN mean and adds nothing
                total[0] += out["loss"].detach().double() * weight
            total[1] += weight
            total[2] += size
            total[3] += 1
            total[4] += tokens is None
        if dist_utils.is_dist_avail_and_initialized():
            torch.distributed.all_reduce(total)
        loss_sum, weight, count, num_batches, untokened = total.tolist()
        if 0 < untokened < num_batches:
            raise ValueError(f"{type(model).__name__} reported num_tokens for some validation batches only")
        result = {"loss": loss_sum / weight if weight else float("nan"), "num_samples": int(count)}
        if count and not untokened:
            result["num_tokens"] = int(weight)
        return result


#: the counts ``evaluation`` reports next to the loss (not metrics)
COUNT_KEYS = ("num_samples", "num_tokens")


def batch_size_of(samples: dict[str, Any]) -> int:
    """The number of samples in a batch: the first dimension of its first tensor, else the first list's length."""
    for value in samples.values():
        if isinstance(value, Tensor) and value.dim() > 0:
            return int(value.shape[0])
    for value in samples.values():
        if isinstance(value, list | tuple):
            return len(value)
    raise ValueError(f"cannot tell the batch size of a batch with keys {sorted(samples)}")
