"""The validator: runs the task's evaluation on the validation splits and returns named metrics.

Every ``name/split`` dataset is evaluated over its whole split: a sized dataset is split over the ranks without
padding (rank ``r`` takes samples ``r, r + W, ...``), a stream is read by rank 0 alone, and the task sums over
ranks, so the result is the same for any ``run.batch_size_eval`` and any number of ranks. The metrics are
``name/split`` (that dataset's loss), ``name/split/<metric>`` for any other number the task reports, and
``loss``: the mean over every validation dataset together, weighted as the task weights its loss (by answer
tokens for MiniGPT-4, so ``loss`` is the token-weighted mean loss over all validation tokens).

The validator has no state of its own (the best value so far belongs to the checkpointer).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, Sampler

from minigpt4.datasets.data_utils import move_to_device
from minigpt4.datasets.datasets.common import collate
from minigpt4.tasks.base_task import COUNT_KEYS

logger = logging.getLogger(__name__)


class _RankShard(Sampler[int]):
    """Indices ``rank, rank + world_size, ...``: every sample once over all ranks (no padding, no drop)."""

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        self.indices = range(rank, length, world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


@dataclass
class Validation:
    """A validation's named metrics and, per dataset, what its loss was averaged over."""

    metrics: dict[str, float] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # {name/split: {"num_tokens": n, ...}}
    weighted_by: str = "num_samples"  # the count ``loss`` is weighted by

    def describe(self) -> str:
        """How ``loss`` was combined, in words, with each dataset's value and weight."""
        unit = self.weighted_by.removeprefix("num_")
        parts = ", ".join(
            f"{key} {self.metrics[key]:.4f} ({counts.get(self.weighted_by, 0)} {unit})"
            for key, counts in self.counts.items()
        )
        return f"loss {self.metrics['loss']:.4f} = mean over all {unit} of {parts}"


class Validator:
    """Evaluates a model on the ``name/split`` datasets named by a list of splits.

    Args:
        task: the task (its ``evaluation(model, batches, device)`` gives ``loss`` and counts per dataset).
        datasets: ``{dataset name: {split: dataset}}``.
        batch_size: ``run.batch_size_eval``.
        num_workers: ``run.num_workers``.
        device: where batches go.
        autocast: the runner's autocast context (the same precision as training).
        rank, world_size: this process's place in the job.
    """

    def __init__(
        self,
        task: Any,
        datasets: Mapping[str, Mapping[str, Any]],
        batch_size: int,
        num_workers: int,
        device: torch.device,
        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.task, self.datasets = task, datasets
        self.batch_size, self.num_workers = batch_size, num_workers
        self.device, self.autocast = device, autocast
        self.rank, self.world_size = rank, world_size

    def datasets_for(self, splits: Any) -> dict[str, Any]:
        """``{"name/split": dataset}`` for every dataset that has one of ``splits``."""
        return {
            f"{name}/{split}": dataset
            for name, dataset_splits in self.datasets.items()
            for split, dataset in dataset_splits.items()
            if split in splits
        }

    def batches(self, dataset: Any) -> Iterator[dict[str, Any]]:
        """This rank's batches of ``dataset`` on the device (see the module docstring for the split)."""
        if getattr(dataset, "resampled", False):
            raise ValueError(
                f"{getattr(dataset, 'name', 'a dataset')}: a resampled (endless) stream cannot be evaluated; "
                "set resampled: false in its datasets section or leave it out of run.valid_splits"
            )
        if isinstance(dataset, IterableDataset):
            if self.rank != 0:
                return
            sampler = None
        else:
            sampler = _RankShard(len(dataset), self.rank, self.world_size)
        loader = DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=getattr(dataset, "collater", None) or collate,
        )
        for batch in loader:
            yield move_to_device(batch, self.device)

    def run(self, model: nn.Module, splits: Any) -> Validation:
        """Evaluate ``model`` on ``splits`` (every rank takes part); an empty result when no dataset has them."""
        result = Validation()
        was_training = model.training
        model.eval()
        try:
            for key, dataset in self.datasets_for(splits).items():
                with self.autocast():
                    out = self.task.evaluation(model, self.batches(dataset), self.device)
                result.metrics[key] = out["loss"]
                result.metrics.update({f"{key}/{k}": v for k, v in out.items() if k != "loss" and k not in COUNT_KEYS})
                result.counts[key] = {k: int(out[k]) for k in COUNT_KEYS if k in out}
        finally:
            model.train(was_training)
        if result.counts:
            result.weighted_by = (
                "num_tokens" if all("num_tokens" in c for c in result.counts.values()) else "num_samples"
            )
            weights = {key: counts.get(result.weighted_by, 0) for key, counts in result.counts.items()}
            total = sum(weights.values())
            result.metrics["loss"] = (
                sum(result.metrics[key] * w for key, w in weights.items() if w) / total if total else float("nan")
            )
        return result
