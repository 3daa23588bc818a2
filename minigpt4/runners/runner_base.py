"""``runner_base``: the training loop, distribution, mixed precision, logging, checkpoints and exact resume.

One run lives in ``run.output_dir/<job id>/`` (see :mod:`minigpt4.runners.checkpoint` for the files). The job
id is ``run.job_name`` when set, otherwise a timestamp; ``run.auto_resume`` requires ``run.job_name`` so that a
restarted job finds its own folder.

Training is ``run.max_epoch`` epochs of ``run.iters_per_epoch`` iterations. Each iteration draws one batch per
rank from the data iterator (:func:`minigpt4.datasets.data_utils.build_train_iterator`), steps the LR schedule
(LAVIS style, ``scheduler.step(cur_epoch, cur_step)``) and runs forward/backward; every ``run.accum_grad_iters``
iterations the optimizer steps. A non-finite loss skips the whole accumulation window (no update, gradients
zeroed) and is counted; ``run.max_consecutive_nonfinite`` of them in a row stop the run.

Exact resume: a checkpoint is written only at an optimizer-step boundary and holds the trainable weights,
optimizer, LR scheduler, grad scaler, global step, every rank's RNG states (gathered to rank 0) and the data
iterator's state (which holds every rank's position), so one file is the whole state of the job. It is written
atomically (temporary file, fsync, rename). Resuming restores all of it and cuts ``metrics.jsonl`` back to the
resumed step, so a run killed at any moment and resumed from its newest complete checkpoint replays exactly the
iterations it lost and its loss log reads as if it had never stopped.

Distribution: under torchrun the model is wrapped in DDP; only the trainable parameters (``llama_proj``, LoRA)
take part in the gradient all-reduce, and parameters and buffers are broadcast from rank 0 once, when wrapping.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset

from minigpt4.common import dist_utils
from minigpt4.common.logger import progress
from minigpt4.common.optims import build_lr_scheduler
from minigpt4.common.registry import registry
from minigpt4.common.utils import now
from minigpt4.datasets.datasets.common import collate
from minigpt4.runners import checkpoint as ckpt_io
from minigpt4.tasks.base_task import batch_size_of

logger = logging.getLogger(__name__)

AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


class NonFiniteLossError(RuntimeError):
    """Too many non-finite losses in a row."""


# ----------------------------------------------------------------------------------------------------------
# run-level decisions (also used by train.py before anything heavy is built)
# ----------------------------------------------------------------------------------------------------------


def check_run_config(run_cfg: Any, iters_per_epoch: int | None = None) -> None:
    """Checks across ``run`` keys that the schema cannot express (train.py runs them before building anything).

    Checkpoints and epochs end on optimizer steps, so their periods must be multiples of ``accum_grad_iters``.

    Raises:
        ValueError: naming the offending key.
    """
    accum = run_cfg.accum_grad_iters
    iters = iters_per_epoch if iters_per_epoch is not None else run_cfg.iters_per_epoch
    if run_cfg.amp_dtype not in AMP_DTYPES:
        raise ValueError(f"run.amp_dtype: expected one of {', '.join(AMP_DTYPES)}, got {run_cfg.amp_dtype!r}")
    if accum < 1:
        raise ValueError(f"run.accum_grad_iters must be >= 1, got {accum}")
    if iters is not None and (iters <= 0 or iters % accum):
        raise ValueError(f"run.iters_per_epoch ({iters}) must be a positive multiple of run.accum_grad_iters ({accum})")
    if run_cfg.save_freq is not None and (run_cfg.save_freq <= 0 or run_cfg.save_freq % accum):
        raise ValueError(f"run.save_freq ({run_cfg.save_freq}) must be a positive multiple of run.accum_grad_iters")
    if run_cfg.log_freq <= 0:
        raise ValueError(f"run.log_freq must be positive, got {run_cfg.log_freq}")
    if run_cfg.auto_resume and not run_cfg.job_name:
        raise ValueError(
            "run.auto_resume: True needs run.job_name: the run folder is output_dir/<job_name> so that a "
            "restarted job finds its checkpoints (without a job name each start gets a new timestamped folder)"
        )


def job_id_from_config(run_cfg: Any) -> str:
    """``run.job_name``, or a timestamp. Under DDP call it on every rank: rank 0's value is broadcast.

    Raises:
        ValueError: ``run.auto_resume`` without ``run.job_name`` (a timestamped folder is never found again).
    """
    check_run_config(run_cfg)
    if run_cfg.job_name:
        return str(run_cfg.job_name)
    job_id = [now()]
    if dist_utils.is_dist_avail_and_initialized():
        dist.broadcast_object_list(job_id, src=0)
    return job_id[0]


def resolve_device(run_cfg: Any) -> torch.device:
    """The training device from ``run.device`` (and the local GPU picked by ``init_distributed_mode``)."""
    name = str(run_cfg.device)
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"run.device is {name!r} but CUDA is not available on this machine; "
                "set run.device=cpu (e.g. --options run.device=cpu) or run on a GPU machine"
            )
        gpu = run_cfg.get("gpu")
        return torch.device("cuda", gpu) if name == "cuda" and gpu is not None else torch.device(name)
    return torch.device(name)


@dataclass(frozen=True)
class Precision:
    """How the forward pass runs: autocast dtype (None: fp32) and whether a GradScaler is used."""

    dtype: torch.dtype | None
    use_scaler: bool

    @property
    def autocast(self) -> bool:
        return self.dtype is not None


def resolve_precision(run_cfg: Any, device: torch.device) -> Precision:
    """``run.amp`` + ``run.amp_dtype`` on ``device``.

    ``amp: True`` with ``float16`` is the published behaviour: fp16 autocast with a GradScaler, CUDA only (on
    a CPU it falls back to fp32 with a warning). ``bfloat16`` autocasts on CUDA and CPU and needs no scaler.
    """
    check_run_config(run_cfg)
    if not run_cfg.amp:
        return Precision(None, False)
    dtype = AMP_DTYPES[run_cfg.amp_dtype]
    if dtype == torch.float16 and device.type != "cuda":
        logger.warning(
            "run.amp with float16 needs CUDA; on %s the run uses float32. Set run.amp_dtype=bfloat16 for mixed "
            "precision on this device.",
            device.type,
        )
        return Precision(None, False)
    return Precision(dtype, dtype == torch.float16)


def param_digest(state: dict[str, Tensor]) -> str:
    """A SHA-256 of a state dict's names and bytes (to check that ranks hold the same weights)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").reshape(-1)
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def move_to_device(samples: Any, device: torch.device) -> Any:
    """Tensors in a (nested) batch moved to ``device``; everything else unchanged."""
    if isinstance(samples, Tensor):
        return samples.to(device, non_blocking=True)
    if isinstance(samples, dict):
        return {key: move_to_device(value, device) for key, value in samples.items()}
    if isinstance(samples, list | tuple) and any(isinstance(v, Tensor) for v in samples):
        return type(samples)(move_to_device(v, device) for v in samples)
    return samples


# ----------------------------------------------------------------------------------------------------------
# the runner
# ----------------------------------------------------------------------------------------------------------


@registry.register_runner("runner_base")
class RunnerBase:
    """Trains ``model`` on ``datasets`` with ``task`` as ``cfg.run_cfg`` says.

    Args:
        cfg: the job's :class:`~minigpt4.common.config.Config`.
        task: the task (owns the step and the loss).
        model: the model (its trainable parameters are optimised; ``trainable_state_dict()`` is checkpointed).
        datasets: ``{dataset name: {split: dataset}}`` from ``task.build_datasets``.
        job_id: the run folder name under ``run.output_dir``.
    """

    def __init__(self, cfg: Any, task: Any, model: nn.Module, datasets: dict[str, dict[str, Any]], job_id: str):
        self.cfg = cfg
        self.run_cfg = cfg.run_cfg
        self.task = task
        self.datasets = datasets
        self.job_id = job_id
        self.rank = dist_utils.get_rank()
        self.world_size = dist_utils.get_world_size()
        self.device = resolve_device(self.run_cfg)
        self.precision = resolve_precision(self.run_cfg, self.device)
        self.run_dir = Path(self.run_cfg.output_dir) / job_id
        self.train_datasets = self.select_train_datasets()
        self.iters_per_epoch = self.resolve_iters_per_epoch()
        self.accum = int(self.run_cfg.accum_grad_iters)
        check_run_config(self.run_cfg, self.iters_per_epoch)

        # 8-bit (low_resource) models are placed on their GPU when loaded and cannot be moved.
        self.model = model if cfg.model_cfg.get("low_resource", False) else model.to(self.device)
        if self.run_cfg.compile:
            if not hasattr(self.model, "compile_networks"):
                raise ValueError(f"run.compile: {type(self.model).__name__} has no compile_networks()")
            logger.info("run.compile: compiling %s", ", ".join(self.model.compile_networks()))
        self.ddp_model = self.wrap_model()
        self.optimizer = self.build_optimizer()
        self.scheduler = self.build_lr_scheduler()
        self.scaler = torch.amp.GradScaler("cuda") if self.precision.use_scaler else None

        self.train_iter: Any = None
        self.global_step = 0
        self.best_val_loss: float | None = None
        self.nonfinite_total = 0
        self.nonfinite_in_a_row = 0
        self.last_checkpoint: Path | None = None
        self.metrics: ckpt_io.MetricsLog | None = None
        self.tb_writer: Any = None

    # -- setup ------------------------------------------------------------------------------------------
    def select_train_datasets(self) -> dict[str, Any]:
        """``{name: dataset}``: the one split of each dataset named in ``run.train_splits``."""
        chosen = {}
        for name, splits in self.datasets.items():
            found = [split for split in self.run_cfg.train_splits if split in splits]
            if len(found) > 1:
                raise ValueError(f"datasets.{name}: several train splits {found}; run.train_splits should name one")
            if found:
                chosen[name] = splits[found[0]]
        if not chosen:
            raise ValueError(
                f"no dataset has a split named in run.train_splits={list(self.run_cfg.train_splits)} "
                f"(splits: { {name: list(splits) for name, splits in self.datasets.items()} })"
            )
        return chosen

    def resolve_iters_per_epoch(self) -> int:
        """``run.iters_per_epoch``, or one pass over finite (sized) data when it is unset."""
        if self.run_cfg.iters_per_epoch is not None:
            return int(self.run_cfg.iters_per_epoch)
        counts = []
        for name, dataset in self.train_datasets.items():
            if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__"):
                raise ValueError(f"run.iters_per_epoch must be set: dataset {name!r} is a stream with no length")
            batch = self.cfg.datasets_cfg[name].get("batch_size") or self.run_cfg.batch_size_train
            counts.append(len(dataset) // self.world_size // batch)  # the iterator drops incomplete batches
        return max(sum(counts), 1)

    def wrap_model(self) -> nn.Module:
        """DDP over the trainable parameters when several ranks run; the model itself otherwise."""
        if self.world_size == 1:
            return self.model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        # Parameters and buffers are broadcast from rank 0 once, at wrap time; after that the frozen towers stay
        # identical on every rank, so buffers are not re-broadcast before every forward.
        no_buffer_sync = (
            {"forward_sync_buffers": False}
            if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
            else {"broadcast_buffers": False}  # torch < 2.15
        )
        return DistributedDataParallel(
            self.model, device_ids=device_ids, find_unused_parameters=False, **no_buffer_sync
        )

    def build_optimizer(self) -> torch.optim.Optimizer:
        """AdamW; weight decay on >= 2-d weights only (none on biases, norms or other 1-d parameters)."""
        decay, no_decay = [], []
        for name, param in self.model.named_parameters():
            if not param.requires_grad:
                continue
            (no_decay if param.ndim < 2 or name.endswith(".bias") else decay).append(param)
        if not decay and not no_decay:
            raise ValueError("the model has no trainable parameters")
        num = sum(p.numel() for p in decay + no_decay)
        logger.info(
            "trainable parameters: %d (%d tensors with weight decay, %d without)", num, len(decay), len(no_decay)
        )
        groups = [
            {"params": decay, "weight_decay": float(self.run_cfg.weight_decay)},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        groups = [group for group in groups if group["params"]]
        return torch.optim.AdamW(groups, lr=float(self.run_cfg.init_lr), betas=(0.9, float(self.run_cfg.beta2)))

    def build_lr_scheduler(self) -> Any:
        """The ``run.lr_sched`` scheduler from the registry (None: constant ``run.init_lr``)."""
        if self.run_cfg.lr_sched is None:
            return None
        return build_lr_scheduler(self.run_cfg, self.optimizer, self.iters_per_epoch)

    def build_train_iterator(self) -> Any:
        from minigpt4.datasets.data_utils import build_train_iterator

        return build_train_iterator(
            self.train_datasets,
            self.cfg.datasets_cfg,
            self.run_cfg,
            rank=self.rank,
            world_size=self.world_size,
            device=self.device,
            seed=int(self.run_cfg.seed),
        )

    # -- run folder, resume ---------------------------------------------------------------------------------
    def find_resume_checkpoint(self) -> Path | None:
        """The newest complete checkpoint of the run folder (``auto_resume``), else ``run.resume_ckpt_path``."""
        if self.run_cfg.auto_resume:
            latest = ckpt_io.latest_checkpoint(self.run_dir)
            if latest is not None:
                return latest
        if self.run_cfg.resume_ckpt_path:
            path = Path(self.run_cfg.resume_ckpt_path)
            if not path.is_file():
                raise FileNotFoundError(f"run.resume_ckpt_path: no such checkpoint file: {path}")
            return path
        return None

    def prepare_run_dir(self, resuming: bool) -> None:
        """Create the run folder, drop torn temporary files, refuse to overwrite another run, save config.yaml."""
        if dist_utils.is_main_process():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            ckpt_io.remove_stale_tmp_files(self.run_dir)
            if not resuming and ckpt_io.list_checkpoints(self.run_dir):
                raise FileExistsError(
                    f"{self.run_dir} already holds checkpoints of an earlier run; set run.auto_resume=True to "
                    "continue it, choose another run.job_name, or remove the folder"
                )
            ckpt_io.atomic_write_text(self.cfg.to_yaml(), self.run_dir / "config.yaml")
        dist_utils.barrier()

    def load_resume_state(self, path: Path) -> dict[str, Any]:
        """Restore weights, optimizer, scheduler, scaler and counters; return the per-rank states for later."""
        logger.info("resuming from %s", path)
        state = ckpt_io.load_checkpoint_file(path)
        self.load_trainable_state(state["model"], path)
        if state.get("optimizer") is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        saved_iters = state.get("iters_per_epoch", self.iters_per_epoch)
        if saved_iters != self.iters_per_epoch:
            logger.warning(
                "the checkpoint was written with iters_per_epoch=%s, this run uses %s",
                saved_iters,
                self.iters_per_epoch,
            )
        self.global_step = int(state.get("global_step", (int(state.get("epoch", -1)) + 1) * self.iters_per_epoch))
        self.best_val_loss = state.get("best_val_loss")
        self.nonfinite_total = int(state.get("nonfinite_total", 0))
        return {"rng": state.get("rng"), "data": state.get("data")}

    def load_trainable_state(self, state: dict[str, Tensor], path: Path) -> None:
        """Load a checkpoint's ``model`` entry; every trainable parameter must be there (strict for resume)."""
        expected = {name for name, param in self.model.named_parameters() if param.requires_grad}
        missing = sorted(expected - set(state))
        if missing:
            raise KeyError(f"{path}: the checkpoint lacks trainable parameters {missing[:5]} (of {len(missing)})")
        result = self.model.load_state_dict(state, strict=False)
        if result.unexpected_keys:
            raise KeyError(f"{path}: tensors not in the model: {result.unexpected_keys[:5]}")

    def restore_rank_state(self, rank_states: dict[str, Any]) -> None:
        """This rank's data-iterator position and RNG states (after the iterator is built)."""
        rngs, data = rank_states.get("rng"), rank_states.get("data")
        if data is not None:
            self.train_iter.load_state_dict(data)
        else:
            logger.warning("the checkpoint has no data-iterator state: the data order restarts from the seed")
        if not rngs or len(rngs) != self.world_size:
            logger.warning(
                "the checkpoint holds RNG states of %d ranks, this run has %d: RNG streams restart from the seed",
                len(rngs or []),
                self.world_size,
            )
            return
        ckpt_io.set_rng_state(rngs[self.rank])

    def open_logs(self, resumed: bool) -> None:
        if not dist_utils.is_main_process():
            return
        self.metrics = ckpt_io.MetricsLog(self.run_dir / ckpt_io.METRICS_FILE)
        if resumed:
            self.metrics.truncate_after(self.global_step)
        else:
            self.metrics.reset()
        if self.run_cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events a killed run wrote after the resumed step (all of them on a fresh start)
            self.tb_writer = SummaryWriter(
                log_dir=str(self.run_dir / "tensorboard"), purge_step=self.global_step + 1 if resumed else 0
            )

    # -- the loop ---------------------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        """Train (or only evaluate when ``run.evaluate``); returns the summary also saved as summary.json."""
        resume_path = self.find_resume_checkpoint()
        self.prepare_run_dir(resuming=resume_path is not None)
        rank_states = self.load_resume_state(resume_path) if resume_path is not None else None
        self.open_logs(resumed=resume_path is not None)
        if self.run_cfg.evaluate:
            return self.evaluate_only()
        self.train_iter = self.build_train_iterator()
        if rank_states is not None:
            self.restore_rank_state(rank_states)

        start_step = self.global_step
        total_steps = self.run_cfg.max_epoch * self.iters_per_epoch
        self._clock = _Clock(start_step, total_steps, self.world_size)
        logger.info(
            "training %d epochs x %d iterations from step %d; run folder %s",
            self.run_cfg.max_epoch,
            self.iters_per_epoch,
            start_step,
            self.run_dir,
        )
        try:
            start_epoch, start_iter = divmod(self.global_step, self.iters_per_epoch)
            for epoch in range(start_epoch, self.run_cfg.max_epoch):
                self.train_epoch(epoch, start_iter if epoch == start_epoch else 0)
                if self.run_cfg.valid_splits:
                    self.validate(epoch)
                self.save_checkpoint(epoch, ckpt_io.epoch_checkpoint_name(epoch))
        finally:
            if self.tb_writer is not None:
                self.tb_writer.close()
        return self.finish(start_step)

    def train_epoch(self, epoch: int, start_iter: int) -> None:
        """Iterations ``start_iter .. iters_per_epoch - 1`` of ``epoch``."""
        self.model.train()
        bar = _progress_bar(self.iters_per_epoch, start_iter, epoch, self.run_cfg.progress_bar)
        window_poisoned = False
        try:
            for i in range(start_iter, self.iters_per_epoch):
                if self.scheduler is not None:
                    self.scheduler.step(cur_epoch=epoch, cur_step=i)
                samples = move_to_device(next(self.train_iter), self.device)
                boundary = (i + 1) % self.accum == 0
                loss_mean, finite = self.forward_backward(samples, sync=boundary)
                self._clock.add_samples(batch_size_of(samples))
                if finite:
                    self.nonfinite_in_a_row = 0
                else:
                    window_poisoned = True
                    self.optimizer.zero_grad(set_to_none=True)
                    self.on_nonfinite(epoch, i)
                if boundary:
                    if window_poisoned:
                        self.optimizer.zero_grad(set_to_none=True)
                        window_poisoned = False
                    else:
                        self.optimizer_step()
                self.global_step += 1
                bar.update(1)
                if self.global_step % self.run_cfg.log_freq == 0:
                    self.log_step(epoch, i, loss_mean, bar)
                save_freq = self.run_cfg.save_freq
                if save_freq and self.global_step % save_freq == 0 and i + 1 < self.iters_per_epoch:
                    self.save_checkpoint(epoch, ckpt_io.step_checkpoint_name(self.global_step))
        finally:
            bar.close()

    def forward_backward(self, samples: dict[str, Any], sync: bool) -> tuple[float, bool]:
        """Loss and backward of one batch. Returns (loss mean over ranks, whether every rank's loss is finite).

        Under DDP the gradient all-reduce happens only when ``sync`` (the last iteration of an accumulation
        window); a non-finite loss on any rank skips the backward on every rank.
        """
        no_sync = isinstance(self.ddp_model, DistributedDataParallel) and not sync
        with self.ddp_model.no_sync() if no_sync else contextlib.nullcontext():
            with self.autocast():
                loss = self.task.train_step(self.ddp_model, samples)
            value = loss.detach().float()
            finite = torch.isfinite(value)
            stats = torch.stack([torch.where(finite, value, torch.zeros_like(value)), (~finite).float()])
            if self.world_size > 1:
                dist.all_reduce(stats)
            loss_sum, bad_ranks = stats.tolist()
            if bad_ranks:
                return float("nan"), False
            scaled = loss / self.accum
            if self.scaler is not None:
                scaled = self.scaler.scale(scaled)
            scaled.backward()
        return loss_sum / self.world_size, True

    def optimizer_step(self) -> None:
        max_norm = self.run_cfg.max_grad_norm
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        if self.scaler is not None:
            if max_norm:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(params, max_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            if max_norm:
                torch.nn.utils.clip_grad_norm_(params, max_norm)
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.precision.autocast:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.precision.dtype)

    def on_nonfinite(self, epoch: int, i: int) -> None:
        """Count a skipped iteration; stop after ``run.max_consecutive_nonfinite`` in a row."""
        self.nonfinite_total += 1
        self.nonfinite_in_a_row += 1
        logger.warning(
            "non-finite loss at epoch %d iteration %d (step %d): update skipped (%d in a row, %d in total)",
            epoch,
            i,
            self.global_step + 1,
            self.nonfinite_in_a_row,
            self.nonfinite_total,
        )
        limit = self.run_cfg.max_consecutive_nonfinite
        if limit and self.nonfinite_in_a_row >= limit:
            raise NonFiniteLossError(
                f"{self.nonfinite_in_a_row} non-finite losses in a row (run.max_consecutive_nonfinite={limit}) at "
                f"step {self.global_step + 1}. Try a lower run.init_lr (or more run.warmup_steps), "
                "run.amp_dtype=bfloat16 instead of float16, run.max_grad_norm=1.0, and check the data "
                "(empty captions, broken images). Resume from the last checkpoint with run.auto_resume=True."
            )

    # -- logging ------------------------------------------------------------------------------------------------
    def log_step(self, epoch: int, i: int, loss: float, bar: Any) -> None:
        lr = self.optimizer.param_groups[0]["lr"]
        speed, eta = self._clock.tick(self.global_step)
        bad = dict(self.train_iter.bad_sample_counts()) if hasattr(self.train_iter, "bad_sample_counts") else {}
        record = {
            "kind": "train",
            "step": self.global_step,
            "epoch": epoch,
            "iter": i + 1,
            "loss": loss,
            "lr": lr,
            "samples_per_sec": speed,
            "eta_s": eta if math.isfinite(eta) else None,
            "nonfinite_skipped": self.nonfinite_total,
            "bad_samples": bad,
        }
        logger.info(
            "epoch %d [%d/%d] step %d  loss %.4f  lr %.3e  %.1f samples/s  eta %s  skipped: %d non-finite, bad samples %s",
            epoch,
            i + 1,
            self.iters_per_epoch,
            self.global_step,
            loss,
            lr,
            speed,
            _format_seconds(eta),
            self.nonfinite_total,
            bad or "none",
        )
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
        self.write_record(record)

    def write_record(self, record: dict[str, Any]) -> None:
        if self.metrics is not None:
            self.metrics.append(record)
        if self.tb_writer is not None:
            prefix = "val" if record["kind"] == "val" else "train"
            for key, value in record.items():
                if isinstance(value, int | float) and key not in ("step", "epoch", "iter"):
                    self.tb_writer.add_scalar(f"{prefix}/{key}", value, record["step"])
            for reason, count in (record.get("bad_samples") or {}).items():
                self.tb_writer.add_scalar(f"train/bad_samples/{reason}", count, record["step"])
            self.tb_writer.flush()

    # -- validation ---------------------------------------------------------------------------------------------
    def valid_datasets(self, splits: Any) -> dict[str, Any]:
        return {
            f"{name}/{split}": dataset
            for name, dataset_splits in self.datasets.items()
            for split, dataset in dataset_splits.items()
            if split in splits
        }

    def eval_batches(self, dataset: Any) -> Iterator[dict[str, Any]]:
        """Batches of ``run.batch_size_eval`` over ``dataset`` (sharded over ranks when it has a length)."""
        if getattr(dataset, "resampled", False):
            raise ValueError(
                f"{getattr(dataset, 'name', 'a dataset')}: a resampled (endless) stream cannot be evaluated; "
                "set resampled: false in its datasets section or leave it out of run.valid_splits"
            )
        sampler = None
        if self.world_size > 1 and not isinstance(dataset, IterableDataset):
            sampler = DistributedSampler(dataset, shuffle=False)
        loader = DataLoader(
            dataset,
            batch_size=self.run_cfg.batch_size_eval,
            sampler=sampler,
            shuffle=False,
            num_workers=self.run_cfg.num_workers,
            collate_fn=getattr(dataset, "collater", None) or collate,
        )
        for batch in loader:
            yield move_to_device(batch, self.device)

    def evaluate_splits(self, splits: Any) -> dict[str, float]:
        """Mean loss per ``name/split``, and their mean under ``loss``."""
        self.model.eval()
        results = {}
        try:
            for key, dataset in self.valid_datasets(splits).items():
                with self.autocast():
                    results[key] = self.task.evaluation(self.model, self.eval_batches(dataset), self.device)["loss"]
        finally:
            self.model.train()
        if results:
            results["loss"] = sum(results.values()) / len(results)
        return results

    def validate(self, epoch: int) -> None:
        """Validation loss on ``run.valid_splits``; the best model is kept as checkpoint_best.pth."""
        results = self.evaluate_splits(self.run_cfg.valid_splits)
        if "loss" not in results:
            logger.warning("run.valid_splits=%s: no dataset has these splits", list(self.run_cfg.valid_splits))
            return
        loss = results["loss"]
        logger.info("validation after epoch %d (step %d): %s", epoch, self.global_step, results)
        self.write_record({"kind": "val", "step": self.global_step, "epoch": epoch, **results})
        if self.best_val_loss is None or loss < self.best_val_loss:
            self.best_val_loss = loss
            self.save_checkpoint(epoch, ckpt_io.BEST_CHECKPOINT, prune=False)

    def evaluate_only(self) -> dict[str, Any]:
        splits = list(self.run_cfg.valid_splits) + list(self.run_cfg.test_splits)
        results = self.evaluate_splits(splits)
        logger.info("evaluation: %s", results)
        return {"evaluation": results, "run_dir": str(self.run_dir)}

    # -- checkpoints ----------------------------------------------------------------------------------------------
    def save_checkpoint(self, epoch: int, filename: str, prune: bool = True) -> None:
        """Write the full training state atomically (every rank takes part: per-rank states are gathered)."""
        data_state = self.train_iter.state_dict()  # collective: holds every rank's position
        rng_states: list[Any] = [ckpt_io.get_rng_state()]
        if self.world_size > 1:
            rng_states = [None] * self.world_size
            dist.all_gather_object(rng_states, ckpt_io.get_rng_state())
        if dist_utils.is_main_process():
            state = {
                "model": self.model.trainable_state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "config": self.cfg.to_dict(),
                "epoch": epoch,
                "global_step": self.global_step,
                "iters_per_epoch": self.iters_per_epoch,
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "rng": rng_states,
                "data": data_state,
                "world_size": self.world_size,
                "best_val_loss": self.best_val_loss,
                "nonfinite_total": self.nonfinite_total,
            }
            path = self.run_dir / filename
            ckpt_io.atomic_save(state, path)
            logger.info("saved checkpoint %s (epoch %d, step %d)", path, epoch, self.global_step)
            if filename != ckpt_io.BEST_CHECKPOINT:
                self.last_checkpoint = path
            if prune:
                ckpt_io.prune_checkpoints(self.run_dir, self.run_cfg.keep_last)
        dist_utils.barrier()

    # -- the end --------------------------------------------------------------------------------------------------
    def finish(self, start_step: int) -> dict[str, Any]:
        """Check that every rank holds the same weights and write summary.json."""
        digest = param_digest(self.model.trainable_state_dict())
        digests = [digest]
        if self.world_size > 1:
            digests = [None] * self.world_size
            dist.all_gather_object(digests, digest)
        in_sync = len(set(digests)) == 1
        if not in_sync:
            logger.error("trainable weights differ between ranks: %s", digests)
        elapsed = self._clock.elapsed()
        samples = self._clock.samples * self.world_size
        best = self.run_dir / ckpt_io.BEST_CHECKPOINT
        summary = {
            "global_step": self.global_step,
            "steps_this_run": self.global_step - start_step,
            "time_s": elapsed,
            "samples_per_sec": samples / elapsed if elapsed > 0 else 0.0,
            "run_dir": str(self.run_dir),
            "last_checkpoint": str(self.last_checkpoint) if self.last_checkpoint else None,
            "best_checkpoint": str(best) if best.exists() else None,
            "best_val_loss": self.best_val_loss,
            "nonfinite_skipped": self.nonfinite_total,
            "bad_samples": dict(self.train_iter.bad_sample_counts()) if self.train_iter is not None else {},
            "rank_param_digests": digests,
            "ranks_in_sync": in_sync,
        }
        if self.train_iter is not None:
            self.train_iter.close()
        if dist_utils.is_main_process():
            ckpt_io.atomic_write_text(json.dumps(summary, indent=2, sort_keys=True), self.run_dir / "summary.json")
        dist_utils.barrier()
        return summary


# ----------------------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------------------


class _Clock:
    """Throughput and ETA of the iterations run by this process."""

    def __init__(self, start_step: int, total_steps: int, world_size: int) -> None:
        self.start = self.window_start = time.perf_counter()
        self.start_step = start_step
        self.total_steps = total_steps
        self.world_size = world_size
        self.samples = 0
        self.window_samples = 0

    def add_samples(self, count: int) -> None:
        self.samples += count
        self.window_samples += count

    def tick(self, step: int) -> tuple[float, float]:
        """(samples/s over all ranks since the last tick, seconds left)."""
        now_ = time.perf_counter()
        speed = self.window_samples * self.world_size / max(now_ - self.window_start, 1e-9)
        self.window_start, self.window_samples = now_, 0
        done = step - self.start_step
        eta = (now_ - self.start) / done * (self.total_steps - step) if done else float("nan")
        return speed, eta

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def _progress_bar(total: int, initial: int, epoch: int, enabled: bool) -> Any:
    bar = progress(total=total, desc=f"epoch {epoch}", disable=None if enabled else True)
    if initial:
        bar.update(initial)
    return bar


def _format_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


__all__ = [
    "NonFiniteLossError",
    "Precision",
    "check_run_config",
    "RunnerBase",
    "job_id_from_config",
    "move_to_device",
    "param_digest",
    "resolve_device",
    "resolve_precision",
]
