"""The training iterator: endless, ratio-mixed batches from every training dataset, with exact resume.

``build_train_iterator(datasets, dataset_cfgs, run_cfg, rank=..., world_size=..., device=..., seed=...)``
gives a :class:`TrainIterator`. Each ``next()`` picks one source with probability proportional to its
``sample_ratio`` (a seeded RNG, as LAVIS's ``MultiIterLoader``) and returns that source's next batch on
``device``: ``{"image": [B, 3, H, W], "answer": [str] * B, ...}``.

Exact resume. Every random choice is a function of (seed, rank, epoch, stream, position): the mixing RNG,
the shard order, the shuffle buffers, the random crops (seeded per sample). ``state_dict()`` records, per source,
the epoch, the batches consumed in it and, for webdataset streams, how many raw samples each loader-worker
stream has consumed; ``load_state_dict()`` rebuilds the loaders so that each stream drops exactly that many raw
samples before decoding anything (map-style sources skip sampler indices). A DataLoader takes batches from its
workers in turn; on resume worker ``i`` plays stream ``(i + k) % workers`` so that the turn continues with the
stream after the last one consumed. The next batches then equal those of an uninterrupted run, given the same
``world_size`` (and, for webdataset sources, the same ``run.num_workers``; otherwise their streams restart, with a
warning).

Under DDP each rank has its own state: when a process group is initialised, ``state_dict()`` gathers all ranks'
states (so it must be called on every rank) and ``load_state_dict()`` picks this rank's.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import BatchSampler, ConcatDataset, DataLoader, Dataset, DistributedSampler, IterableDataset

from minigpt4.datasets.datasets.common import FLUSH_KEY, META_KEY, collate, derive_seed
from minigpt4.datasets.datasets.webdataset_source import StreamPlan

logger = logging.getLogger(__name__)

STATE_VERSION = 1
LOG_BAD_EVERY = 500  # batches between two logs of new bad-sample counts


def move_to_device(batch: Any, device: torch.device | str) -> Any:
    """Tensors (nested in dicts/lists) to ``device``; other values unchanged."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


def _identity(batch: Any) -> Any:
    return batch


class _SkipBatches(torch.utils.data.Sampler):
    """A batch sampler that drops its first ``skip`` batches (resume without loading them)."""

    def __init__(self, batches: BatchSampler, skip: int) -> None:
        self.batches, self.skip = batches, skip

    def __iter__(self) -> Iterator[list[int]]:
        for i, batch in enumerate(self.batches):
            if i >= self.skip:
                yield batch

    def __len__(self) -> int:
        return max(0, len(self.batches) - self.skip)


class _Source:
    """One training dataset: its DataLoader (rebuilt per epoch), position and bad-sample counts."""

    def __init__(
        self,
        name: str,
        dataset: Any,
        batch_size: int,
        num_workers: int,
        pin_memory: bool,
        rank: int,
        world: int,
        seed: int,
    ) -> None:
        self.name, self.dataset, self.batch_size = name, dataset, batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.rank, self.world_size, self.seed = rank, world, seed
        self.streaming = isinstance(dataset, IterableDataset)
        if self.streaming and not callable(getattr(dataset, "with_plan", None)):
            raise TypeError(
                f"{name}: an iterable dataset must stream by a StreamPlan (with_plan(), as ImageTextWebDataset), "
                f"got {type(dataset).__name__}"
            )
        self.epoch = 0
        self.batches = 0  # consumed in this epoch
        self.cursors = [0] * max(1, num_workers)  # raw samples consumed per stream role (webdataset)
        self.last_role = -1
        self.bad_base: Counter[str] = Counter()  # counts of finished epochs / before a resume
        self.bad_latest: dict[int, dict[str, int]] = {}  # cumulative per stream role in this epoch
        self._it: Iterator[dict[str, Any]] | None = None
        self._empty_epochs = 0

    # loaders -------------------------------------------------------------------------------------------------
    def _loader(self) -> DataLoader:
        # a private generator for the workers' base seed: making a loader never draws from torch's global RNG
        generator = torch.Generator().manual_seed(derive_seed("loader", self.seed, self.rank, self.name, self.epoch))
        common = dict(num_workers=self.num_workers, pin_memory=self.pin_memory, generator=generator)
        if self.streaming:
            roles = len(self.cursors)
            plan = StreamPlan(
                rank=self.rank,
                world_size=self.world_size,
                seed=self.seed,
                epoch=self.epoch,
                role_offset=(self.last_role + 1) % roles,
                resume_cursors=list(self.cursors),
                batch_size=self.batch_size,
            )
            return DataLoader(
                self.dataset.with_plan(plan),
                batch_size=None,
                collate_fn=_identity,
                **common,
            )
        if hasattr(self.dataset, "set_augment_seed"):
            self.dataset.set_augment_seed(self.seed, self.epoch)
        sampler = DistributedSampler(
            self.dataset, num_replicas=self.world_size, rank=self.rank, shuffle=True, seed=self.seed, drop_last=True
        )
        sampler.set_epoch(self.epoch)
        batches = BatchSampler(sampler, self.batch_size, drop_last=True)
        if len(batches) == 0:
            raise ValueError(
                f"{self.name}: {len(self.dataset)} samples make no full batch of {self.batch_size} "
                f"per rank with {self.world_size} ranks; lower the batch size"
            )
        return DataLoader(self.dataset, batch_sampler=_SkipBatches(batches, self.batches), collate_fn=collate, **common)

    def next_batch(self) -> dict[str, Any]:
        while True:
            if self._it is None:
                self._it = iter(self._loader())
            try:
                batch = next(self._it)
            except StopIteration:
                self._end_epoch()
                continue
            self._account(batch)
            if batch.get(FLUSH_KEY):
                continue
            self.batches += 1
            self._empty_epochs = 0
            return batch

    def _end_epoch(self) -> None:
        self._it = None
        if self.batches == 0:
            self._empty_epochs += 1
            if self._empty_epochs >= 2:
                raise RuntimeError(f"{self.name}: a full pass over the data gave no batch of {self.batch_size}")
        self.bad_base.update(self._latest_total())
        logger.debug(
            "%s: data pass %d done after %d batches (the dataset's own pass count, not the run's epoch); bad samples %s",
            self.name,
            self.epoch,
            self.batches,
            dict(self.bad_base),
        )
        self.epoch += 1
        self.batches, self.last_role = 0, -1
        self.cursors = [0] * len(self.cursors)
        self.bad_latest = {}

    def _account(self, batch: dict[str, Any]) -> None:
        meta = batch.pop(META_KEY, None)
        if meta is not None:
            role, cursor, counts = meta
            self.cursors[role] = cursor
            self.last_role = role
            self.bad_latest[role] = counts

    def _latest_total(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for counts in self.bad_latest.values():
            total.update(counts)
        return total

    def bad_counts(self) -> Counter[str]:
        return self.bad_base + self._latest_total()

    # state ---------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "streaming": self.streaming,
            "epoch": self.epoch,
            "batches": self.batches,
            "cursors": list(self.cursors),
            "last_role": self.last_role,
            "bad": dict(self.bad_counts()),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._it = None
        self.epoch, self.batches = int(state["epoch"]), int(state["batches"])
        self.bad_base, self.bad_latest = Counter(state["bad"]), {}
        if not self.streaming:
            return
        if len(state["cursors"]) == len(self.cursors):
            self.cursors, self.last_role = [int(c) for c in state["cursors"]], int(state["last_role"])
        else:
            logger.warning(
                "%s: saved with %d loader workers, now %d: webdataset streams restart (not an exact resume)",
                self.name,
                len(state["cursors"]),
                len(self.cursors),
            )
            self.batches, self.last_role = 0, -1


class TrainIterator:
    """Endless ratio-mixed batches from several sources; see the module docstring.

    Args:
        sources: ``{name: (dataset, batch_size, sample_ratio)}``.
        num_workers: DataLoader workers per source.
        rank, world_size: this process's place in the job (data is split across ranks).
        device: where batches go.
        seed: the run seed.
    """

    def __init__(
        self,
        sources: Mapping[str, tuple[Any, int, float]],
        *,
        num_workers: int,
        rank: int,
        world_size: int,
        device: torch.device | str,
        seed: int,
    ) -> None:
        if not sources:
            raise ValueError("no training dataset")
        self.device = torch.device(device)
        pin = self.device.type == "cuda"
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.names = list(sources)
        self.ratios = [float(r) for _, _, r in sources.values()]
        if any(r <= 0 for r in self.ratios):
            raise ValueError(f"sample_ratio must be > 0, got {dict(zip(self.names, self.ratios))}")
        self.sources = {
            name: _Source(name, ds, bs, num_workers, pin, rank, world_size, seed)
            for name, (ds, bs, _) in sources.items()
        }
        self.rng = random.Random(seed + rank)  # LAVIS seeds Python's RNG with seed + rank
        self.steps = 0
        self._logged_bad: dict[str, int] = {}

    def __iter__(self) -> TrainIterator:
        return self

    def __next__(self) -> dict[str, Any]:
        name = self.names[0] if len(self.names) == 1 else self.rng.choices(self.names, self.ratios, k=1)[0]
        batch = self.sources[name].next_batch()
        self.steps += 1
        if self.steps % LOG_BAD_EVERY == 0:
            self.log_bad_samples(only_if_changed=True)
        return move_to_device(batch, self.device)

    def bad_sample_counts(self) -> dict[str, int]:
        """Skipped samples per reason, over all sources, on this rank (reasons: ``BAD_REASONS``)."""
        total: Counter[str] = Counter()
        for source in self.sources.values():
            total.update(source.bad_counts())
        return dict(total)

    def log_bad_samples(self, only_if_changed: bool = False) -> None:
        counts = self.bad_sample_counts()
        if only_if_changed and counts == self._logged_bad:
            return
        self._logged_bad = counts
        per_source = {n: dict(s.bad_counts()) for n, s in self.sources.items()}
        logger.info("rank %d: skipped bad samples after %d batches: %s %s", self.rank, self.steps, counts, per_source)

    def close(self) -> None:
        """Log the final bad-sample counts and drop the loaders (their workers stop)."""
        self.log_bad_samples()
        for source in self.sources.values():
            source._it = None

    # state ---------------------------------------------------------------------------------------------------
    def local_state_dict(self) -> dict[str, Any]:
        version, internal, gauss = self.rng.getstate()
        return {
            "steps": self.steps,
            "mix_rng": [version, list(internal), gauss],
            "sources": {name: source.state_dict() for name, source in self.sources.items()},
        }

    def state_dict(self) -> dict[str, Any]:
        """``{"version", "seed", "world_size", "ranks": {rank: local state}}`` (collective under DDP)."""
        local = self.local_state_dict()
        ranks = {self.rank: local}
        if self.world_size > 1 and dist.is_available() and dist.is_initialized():
            gathered: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, (self.rank, local))
            ranks = dict(gathered)
        return {"version": STATE_VERSION, "seed": self.seed, "world_size": self.world_size, "ranks": ranks}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        ranks = state["ranks"]
        local = ranks.get(self.rank, ranks.get(str(self.rank)))
        if state["world_size"] != self.world_size or local is None:
            logger.warning(
                "data state saved with world size %s, now %d: using rank %s's state (not an exact resume)",
                state["world_size"],
                self.world_size,
                next(iter(ranks)),
            )
            local = local or next(iter(ranks.values()))
        version, internal, gauss = local["mix_rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self.steps = int(local["steps"])
        for name, source in self.sources.items():
            if name in local["sources"]:
                source.load_state_dict(local["sources"][name])
            else:
                logger.warning("data state has no entry for %r: it starts from the beginning", name)


def _train_dataset(name: str, value: Any, splits: list[str]) -> Dataset:
    """``value`` is a dataset or ``{split: dataset}`` (then the run's train splits are used)."""
    if not isinstance(value, Mapping):
        return value
    chosen = [value[s] for s in splits if s in value]
    if not chosen:
        raise KeyError(f"{name}: none of the train splits {splits} is among its splits {list(value)}")
    if len(chosen) == 1:
        return chosen[0]
    if any(isinstance(d, IterableDataset) for d in chosen):
        raise ValueError(f"{name}: several train splits of a streaming dataset cannot be combined")
    return ConcatDataset(chosen)


def build_train_iterator(
    datasets: Mapping[str, Any],
    dataset_cfgs: Mapping[str, Any],
    run_cfg: Any,
    *,
    rank: int = 0,
    world_size: int = 1,
    device: torch.device | str = "cpu",
    seed: int | None = None,
) -> TrainIterator:
    """The runner's training iterator over every dataset of the config.

    Args:
        datasets: ``{name: dataset}`` or ``{name: {split: dataset}}`` (``run.train_splits`` picks).
        dataset_cfgs: ``{name: validated datasets.<name> section}`` (``batch_size``, ``sample_ratio``).
        run_cfg: the validated run section (``batch_size_train``, ``num_workers``, ``train_splits``, ``seed``).
        rank, world_size, device: this process's place and device.
        seed: defaults to ``run_cfg.seed``.
    """
    seed = run_cfg.seed if seed is None else seed
    sources = {}
    for name, value in datasets.items():
        cfg = dataset_cfgs[name]
        batch_size = cfg.batch_size if cfg.batch_size is not None else run_cfg.batch_size_train
        sources[name] = (_train_dataset(name, value, list(run_cfg.train_splits)), batch_size, cfg.sample_ratio)
        logger.info("train source %s: batch size %d, sample ratio %s", name, batch_size, cfg.sample_ratio)
    return TrainIterator(
        sources, num_workers=run_cfg.num_workers, rank=rank, world_size=world_size, device=device, seed=seed
    )
