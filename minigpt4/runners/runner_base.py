"""``runner_base``: the training loop and step, wired to its components.

One run lives in ``run.output_dir/<job id>/``; the job id is ``run.job_name`` when set, otherwise a timestamp
(``run.auto_resume`` requires ``run.job_name`` so that a restarted job finds its own folder). The components,
each with one job (and, where it has state, its own ``state_dict()`` / ``load_state_dict()``):

- :class:`~minigpt4.runners.checkpointer.Checkpointer`: the run folder's checkpoints (atomic writes, resume
  discovery, ``run.keep_last``, ``checkpoint_best.pth`` by ``run.best_metric`` / ``run.best_mode``);
- :class:`~minigpt4.runners.metrics.MetricsWriter`: log lines, ``metrics.jsonl``, TensorBoard, progress bar;
- :class:`~minigpt4.runners.validator.Validator`: the task's evaluation on ``run.valid_splits``, named metrics;
- :class:`~minigpt4.runners.generation_validator.GenerationValidator`: the benchmark of ``run.valid_generation``
  answered and scored (CIDEr, VQA accuracy, POPE F1), metrics ``<dataset>/<split>/<metric>``;
- :func:`~minigpt4.runners.precision.resolve_precision`: what ``run.amp`` / ``run.amp_dtype`` mean here;
- :mod:`minigpt4.runners.job`: the cross-key checks of the ``run`` section, the job id and the device;
- the optimizer and LR schedule of :mod:`minigpt4.common.optims`, and the data iterator of
  :func:`minigpt4.datasets.data_utils.build_train_iterator` (which puts batches on the device).

Training is ``run.max_epoch`` epochs of ``run.iters_per_epoch`` iterations. Each iteration draws one batch per
rank, steps the LR schedule (LAVIS style, ``scheduler.step(cur_epoch, cur_step)``) and runs forward/backward;
every ``run.accum_grad_iters`` iterations the optimizer steps (through the gradient scaler under fp16, which
skips a step whose gradients overflowed and lowers its scale). A non-finite loss skips the whole accumulation
window (no update, gradients zeroed) and is counted; ``run.max_consecutive_nonfinite`` of them in a row stop the
run.

Exact resume: a checkpoint is written only at an optimizer-step boundary and holds the published entries
(``model`` = the trainable weights, ``optimizer``, ``scaler``, ``config``, ``epoch``) plus the global step, the
LR scheduler, every rank's RNG states (gathered to rank 0), the data iterator's state (every rank's position),
the non-finite count and the checkpointer's and metrics writer's states, so one file is the whole state of the
job. A run killed at any moment and resumed from its newest complete checkpoint replays exactly the iterations
it lost, and its metrics read as if it had never stopped.

Preemption (:mod:`minigpt4.runners.preemption`): SIGTERM / SIGUSR1 on any rank stop every rank after the same
optimizer step (the flag rides on the per-iteration all-reduce of the non-finite check), with a step checkpoint,
a log line and exit status 75.

Distribution: under torchrun the model is wrapped in DDP; only the trainable parameters (``llama_proj``, LoRA)
take part in the gradient all-reduce, and parameters and buffers are broadcast from rank 0 once, when wrapping.
With ``run.parallelism: fsdp`` the frozen modules of ``run.fsdp_modules`` are sharded instead
(:mod:`minigpt4.runners.fsdp`) and the replicated trainable gradients are averaged before each optimizer step.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import IterableDataset

from minigpt4.common import dist_utils
from minigpt4.common.optims import build_lr_scheduler, build_optimizer
from minigpt4.common.registry import registry
from minigpt4.common.utils import peak_rss_mib
from minigpt4.models.base_model import resolve_model_path
from minigpt4.runners import checkpointer as ckpt
from minigpt4.runners import fsdp
from minigpt4.runners.generation_validator import GenerationValidator
from minigpt4.runners.job import check_run_config, job_id_from_config, param_digest, training_device
from minigpt4.runners.metrics import MetricsWriter
from minigpt4.runners.precision import resolve_precision
from minigpt4.runners.preemption import PREEMPTED_EXIT_CODE, Preempted, PreemptionGuard
from minigpt4.runners.validator import Validation, Validator
from minigpt4.tasks.base_task import batch_size_of

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Too many non-finite losses in a row."""


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
        run = self.run_cfg = cfg.run_cfg
        self.cfg, self.task, self.datasets, self.job_id = cfg, task, datasets, job_id
        self.rank, self.world_size = dist_utils.get_rank(), dist_utils.get_world_size()
        self.device = training_device(run)
        self.precision = resolve_precision(run, self.device)
        logger.info("precision: %s (%s)", self.precision.name, self.precision.reason)
        self.run_dir = Path(run.output_dir) / job_id
        self.train_datasets = self.select_train_datasets()
        self.iters_per_epoch = self.resolve_iters_per_epoch()
        self.accum = int(run.accum_grad_iters)
        check_run_config(run, self.iters_per_epoch)
        fsdp.check_parallelism(run, cfg.model_cfg)
        self.fsdp = run.parallelism == "fsdp" and self.world_size > 1

        # 8-bit (low_resource) models are placed on their GPU when loaded and cannot be moved.
        self.model = model if cfg.model_cfg.get("low_resource", False) else model.to(self.device)
        if run.compile:
            if not hasattr(self.model, "compile_networks"):
                raise ValueError(f"run.compile: {type(self.model).__name__} has no compile_networks()")
            logger.info("run.compile: compiling %s", ", ".join(self.model.compile_networks()))
        self.ddp_model = self.wrap_model()
        self.optimizer = build_optimizer(self.model, run)
        self.scheduler = build_lr_scheduler(run, self.optimizer, self.iters_per_epoch) if run.lr_sched else None
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision.use_scaler else None

        self.checkpointer = ckpt.Checkpointer(self.run_dir, run.keep_last, run.best_metric, run.best_mode)
        self.metrics = MetricsWriter(
            self.run_dir, dist_utils.is_main_process(), run.tensorboard, run.progress_bar, self.iters_per_epoch
        )
        self.validator = Validator(
            task, datasets, run.batch_size_eval, run.num_workers, self.device, self.autocast, self.rank, self.world_size
        )
        self.generation_validator = self.build_generation_validator()
        if run.valid_splits or self.generation_validator is not None:
            self.check_best_metric()
        self.train_iter: Any = None
        self.global_step = 0
        self.nonfinite_total = self.nonfinite_in_a_row = 0
        self.preemption = PreemptionGuard()
        self.stop_ranks = 0  # ranks that had received a preemption signal, agreed by all ranks
        self.logged_scale: tuple[float, int] | None = None  # fp16: (loss scale at the last log, the step after it)

    # -- setup ------------------------------------------------------------------------------------------------
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

    def build_generation_validator(self) -> GenerationValidator | None:
        """The validator of ``run.valid_generation`` (None when unset); its sets are read now, before training."""
        path = self.run_cfg.valid_generation
        if not path:
            return None
        validator = GenerationValidator(
            resolve_model_path(path, "run.valid_generation"),
            self.cfg,
            self.device,
            self.autocast,
            self.rank,
            self.world_size,
        )
        logger.info("validation by generation: %s", validator.describe())
        return validator

    def check_best_metric(self) -> None:
        """Fail now, not after the first epoch, when ``run.best_metric`` cannot be among the validation metrics."""
        run = self.run_cfg
        name, keys = run.best_metric, list(self.validator.datasets_for(run.valid_splits))
        generated = self.generation_validator.keys() if self.generation_validator is not None else []
        if (name == "loss" and run.valid_splits) or any(name.startswith(f"{key}/") for key in generated):
            return
        if run.valid_splits and (name in keys or any(name.startswith(f"{key}/") for key in keys)):
            return
        reported = ["'loss' (all datasets)"] if run.valid_splits else []
        reported += [repr(k) for k in keys]
        reported += [f"'{k}/<metric>'" for k in generated]
        raise ValueError(
            f"run.best_metric={name!r}: validation (run.valid_splits={list(run.valid_splits)}, "
            f"run.valid_generation={run.valid_generation}) reports {', '.join(reported) or 'nothing'}"
            + (" and '<dataset>/<split>/<metric>' for other metrics of the task" if keys else "")
            + ("; with run.valid_generation set best_mode is usually max (CIDEr, accuracy, F1)" if generated else "")
        )

    def wrap_model(self) -> nn.Module:
        """DDP over the trainable parameters when several ranks run; the model itself otherwise. Under
        ``run.parallelism: fsdp`` the frozen modules are sharded in place (:mod:`minigpt4.runners.fsdp`) instead.

        Parameters and buffers are broadcast from rank 0 once, at wrap time; after that the frozen towers stay
        identical on every rank, so buffers are not re-broadcast before every forward.
        """
        if self.world_size == 1:
            return self.model
        if self.fsdp:
            full = fsdp.frozen_param_bytes(self.model)
            fsdp.shard_frozen_modules(self.model, list(self.run_cfg.fsdp_modules))
            logger.info(
                "fsdp: frozen parameters on this rank %d -> %d bytes", full, fsdp.frozen_param_bytes(self.model)
            )
            return self.model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(
            self.model, device_ids=device_ids, find_unused_parameters=False, forward_sync_buffers=False
        )

    def build_train_iterator(self) -> Any:
        from minigpt4.datasets.data_utils import build_train_iterator

        run = self.run_cfg
        return build_train_iterator(
            self.train_datasets,
            self.cfg.datasets_cfg,
            run,
            rank=self.rank,
            world_size=self.world_size,
            device=self.device,
            seed=int(run.seed),
        )

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.precision.autocast:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.precision.dtype)

    # -- the loop ---------------------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        """Train (or only evaluate when ``run.evaluate``); returns the summary also saved as summary.json."""
        run = self.run_cfg
        resume_path = self.checkpointer.find_resume(run.auto_resume, run.resume_ckpt_path)
        self.checkpointer.prepare(resuming=resume_path is not None, config_yaml=self.cfg.to_yaml())
        rank_states = self.load_training_state(resume_path) if resume_path is not None else None
        self.metrics.open(resumed=resume_path is not None)
        if run.evaluate:
            return self.evaluate_only()
        self.train_iter = self.build_train_iterator()
        if rank_states is not None:
            self.restore_rank_state(rank_states)

        start_step, total_steps = self.global_step, run.max_epoch * self.iters_per_epoch
        if self.scaler is not None:
            self.logged_scale = (self.scaler.get_scale(), self.global_step + 1)
        self.metrics.start_training(start_step, total_steps, self.world_size)
        logger.info(
            "training %d epochs x %d iterations from step %d; run folder %s",
            run.max_epoch,
            self.iters_per_epoch,
            start_step,
            self.run_dir,
        )
        try:
            with self.preemption:
                start_epoch, start_iter = divmod(self.global_step, self.iters_per_epoch)
                for epoch in range(start_epoch, run.max_epoch):
                    self.train_epoch(epoch, start_iter if epoch == start_epoch else 0)
                    if run.valid_splits or self.generation_validator is not None:
                        self.validate(epoch)
                    self.save_checkpoint(epoch, ckpt.epoch_checkpoint_name(epoch))
                    if self.stop_ranks and epoch + 1 < run.max_epoch:
                        self.stop_for_preemption()
        finally:
            self.metrics.close()
        return self.finish(start_step)

    def train_epoch(self, epoch: int, start_iter: int) -> None:
        """Iterations ``start_iter .. iters_per_epoch - 1`` of ``epoch``."""
        self.model.train()
        self.metrics.start_epoch(epoch, start_iter)
        window_poisoned = False
        try:
            for i in range(start_iter, self.iters_per_epoch):
                if self.scheduler is not None:
                    self.scheduler.step(cur_epoch=epoch, cur_step=i)
                samples = next(self.train_iter)  # already on the device
                boundary = (i + 1) % self.accum == 0
                log_now = (self.global_step + 1) % self.run_cfg.log_freq == 0
                loss_mean, finite = self.forward_backward(samples, sync=boundary, read_loss=log_now)
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
                self.metrics.iteration_done(self.global_step, batch_size_of(samples))
                if log_now:
                    self.log_scale_drop()
                    lr = self.optimizer.param_groups[0]["lr"]
                    bad = self.train_iter.bad_sample_counts()
                    self.metrics.log_train(self.global_step, epoch, i, loss_mean, lr, self.nonfinite_total, bad)
                last_of_epoch = i + 1 == self.iters_per_epoch
                save_freq = self.run_cfg.save_freq
                if save_freq and self.global_step % save_freq == 0 and not last_of_epoch:
                    self.save_checkpoint(epoch, ckpt.step_checkpoint_name(self.global_step))
                if self.stop_ranks and boundary and not last_of_epoch:
                    # (at the end of an epoch the epoch's validation and checkpoint come first, see train())
                    if not (save_freq and self.global_step % save_freq == 0):
                        self.save_checkpoint(epoch, ckpt.step_checkpoint_name(self.global_step))
                    self.stop_for_preemption()
        finally:
            self.metrics.end_epoch()

    # -- the step ---------------------------------------------------------------------------------------------
    def forward_backward(self, samples: dict[str, Any], sync: bool, read_loss: bool = True) -> tuple[float, bool]:
        """Loss and backward of one batch. Returns (loss mean over ranks, whether every rank's loss is finite).

        Under DDP the gradient all-reduce happens only when ``sync`` (the last iteration of an accumulation
        window); a non-finite loss on any rank skips the backward on every rank. The same small all-reduce
        carries this rank's preemption flag, so every rank learns in the same iteration that one of them was
        signalled (``self.stop_ranks``), without a collective of its own.

        This is the step's one host-device synchronisation: reading the finite and stop flags. The loss itself is
        read (in the same read) only when ``read_loss`` (a log step); otherwise the returned loss is NaN.
        """
        no_sync = isinstance(self.ddp_model, DistributedDataParallel) and not sync
        with self.ddp_model.no_sync() if no_sync else contextlib.nullcontext():
            with self.autocast():
                loss = self.task.train_step(self.ddp_model, samples)
            value = loss.detach().float()
            finite = torch.isfinite(value)
            stop = torch.full((), float(self.preemption.requested), device=value.device)  # a fill, no copy
            stats = torch.stack([torch.where(finite, value, torch.zeros_like(value)), (~finite).float(), stop])
            if self.world_size > 1:
                dist.all_reduce(stats)
            loss_sum, bad_ranks, stop_ranks = stats.tolist() if read_loss else [float("nan"), *stats[1:].tolist()]
            self.stop_ranks = max(self.stop_ranks, int(stop_ranks))
            if bad_ranks:
                return float("nan"), False
            scaled = loss / self.accum
            if self.scaler is not None:
                scaled = self.scaler.scale(scaled)
            scaled.backward()
        return loss_sum / self.world_size, True

    def optimizer_step(self) -> None:
        """Clip (``run.max_grad_norm``) and step; under fp16 the scaler skips a step whose gradients overflowed."""
        max_norm = self.run_cfg.max_grad_norm
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        if self.fsdp:  # the replicated trainable parameters: average their gradients, as DDP does
            fsdp.all_reduce_gradients(params, self.world_size)
        if self.scaler is not None:
            if max_norm:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(params, max_norm)
            self.scaler.step(self.optimizer)  # reads whether the gradients overflowed: GradScaler's own sync
            self.scaler.update()
        else:
            if max_norm:
                torch.nn.utils.clip_grad_norm_(params, max_norm)
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def log_scale_drop(self) -> None:
        """At a log step under fp16: say whether the loss scale fell (gradients overflowed, updates skipped) since
        the previous log step. Read here, not at every step, to keep the step free of host-device syncs."""
        if self.scaler is None:
            return
        scale = self.scaler.get_scale()
        previous, since = self.logged_scale or (scale, self.global_step)
        if scale < previous:
            steps = f"step {self.global_step}" if since == self.global_step else f"steps {since}-{self.global_step}"
            logger.info("%s: fp16 gradients overflowed; update skipped, loss scale %g -> %g", steps, previous, scale)
        self.logged_scale = (scale, self.global_step + 1)

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

    def stop_for_preemption(self) -> None:
        """Log and raise :class:`Preempted` (exit status 75) after the checkpoint of this step was written."""
        last = self.checkpointer.last
        here = self.preemption.received.name if self.preemption.received else "no signal on this rank"
        message = (
            f"preempted: a stop signal (SIGTERM/SIGUSR1) reached {self.stop_ranks} of {self.world_size} rank(s) "
            f"(this rank: {here}); stopped after step {self.global_step} with the checkpoint {last}. Restart the same "
            f"command with run.auto_resume=True to continue exactly; exiting with status {PREEMPTED_EXIT_CODE}"
        )
        logger.warning(message)
        self.train_iter.close()
        raise Preempted(message, str(last) if last else None, self.global_step)

    # -- validation -------------------------------------------------------------------------------------------
    def validate(self, epoch: int) -> None:
        """Validation on ``run.valid_splits`` and by ``run.valid_generation``; a new best by ``run.best_metric`` is
        saved as checkpoint_best.pth."""
        result = self.run_validation(self.run_cfg.valid_splits)
        if not result.metrics:
            logger.warning("run.valid_splits=%s: no dataset has these splits", list(self.run_cfg.valid_splits))
            return
        logger.info("validation after epoch %d (step %d): %s", epoch, self.global_step, describe(result))
        self.metrics.write({"kind": "val", "step": self.global_step, "epoch": epoch, **result.metrics})
        if self.checkpointer.improves(result.metrics):
            self.save_checkpoint(epoch, ckpt.BEST_CHECKPOINT)

    def run_validation(self, splits: Any) -> Validation:
        """The loss validation on ``splits`` (when any) with the generation metrics added (when configured)."""
        result = self.validator.run(self.model, splits) if splits else Validation()
        if self.generation_validator is not None:
            start = time.time()
            result.metrics.update(self.generation_validator.run(self.model))
            logger.info("validation by generation took %.1fs", time.time() - start)
        return result

    def evaluate_only(self) -> dict[str, Any]:
        result = self.run_validation(list(self.run_cfg.valid_splits) + list(self.run_cfg.test_splits))
        logger.info("evaluation: %s", describe(result) if result.metrics else "no dataset has these splits")
        self.metrics.write({"kind": "eval", "step": self.global_step, **result.metrics})
        return {"evaluation": result.metrics, "counts": result.counts, "run_dir": str(self.run_dir)}

    # -- checkpoints ------------------------------------------------------------------------------------------
    def save_checkpoint(self, epoch: int, filename: str) -> None:
        """Write the full training state atomically (every rank takes part: per-rank states are gathered)."""
        data_state = self.train_iter.state_dict()  # collective: holds every rank's position
        rng_states = ckpt.gather_rng_states()  # collective
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
                "nonfinite_total": self.nonfinite_total,
                "checkpointer": self.checkpointer.state_dict(),
                "metrics": self.metrics.state_dict(),
            }
            self.checkpointer.save(state, filename)
        dist_utils.barrier()

    def load_training_state(self, path: Path) -> dict[str, Any]:
        """Restore weights, optimizer, scheduler, scaler, counters and components; return the per-rank states."""
        logger.info("resuming from %s", path)
        state = self.checkpointer.load_resume_state(path)
        ckpt.load_trainable_weights(self.model, state["model"], path)
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
        self.nonfinite_total = int(state.get("nonfinite_total", 0))
        # checkpoints written before the components kept their own state: a loss-picked best, files up to the step
        self.checkpointer.load_state_dict(
            state.get("checkpointer")
            or {"best_metric": "loss", "best_mode": "min", "best_value": state.get("best_val_loss")}
        )
        self.metrics.load_state_dict(state.get("metrics") or {"step": self.global_step})
        return {"rng": state.get("rng"), "data": state.get("data")}

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
        ckpt.set_rng_state(rngs[self.rank])

    # -- the end ----------------------------------------------------------------------------------------------
    def finish(self, start_step: int) -> dict[str, Any]:
        """Check that every rank holds the same weights and write summary.json."""
        digest = param_digest(self.model.trainable_state_dict())
        mine = (digest, fsdp.frozen_param_bytes(self.model), peak_rss_mib())
        per_rank = [mine]
        if self.world_size > 1:
            per_rank = [None] * self.world_size
            dist.all_gather_object(per_rank, mine)
        digests = [d for d, _, _ in per_rank]
        in_sync = len(set(digests)) == 1
        if not in_sync:
            logger.error("trainable weights differ between ranks: %s", digests)
        clock, best = self.metrics.clock, self.checkpointer.state_dict()
        last, best_path = self.checkpointer.last, self.checkpointer.best_path
        summary = {
            "global_step": self.global_step,
            "steps_this_run": self.global_step - start_step,
            "time_s": clock.elapsed(),
            "samples_per_sec": clock.samples * self.world_size / clock.elapsed() if clock.elapsed() > 0 else 0.0,
            "run_dir": str(self.run_dir),
            "last_checkpoint": str(last) if last else None,
            "best_checkpoint": str(best_path) if best_path.exists() else None,
            **best,
            "best_val_loss": best["best_value"]
            if (best["best_metric"], best["best_mode"]) == ("loss", "min")
            else None,
            "nonfinite_skipped": self.nonfinite_total,
            "bad_samples": dict(self.train_iter.bad_sample_counts()),
            "rank_param_digests": digests,
            "rank_frozen_param_bytes": [b for _, b, _ in per_rank],
            "rank_peak_rss_mib": [m for _, _, m in per_rank],
            "ranks_in_sync": in_sync,
        }
        self.train_iter.close()
        if dist_utils.is_main_process():
            ckpt.atomic_write_text(json.dumps(summary, indent=2, sort_keys=True), self.run_dir / "summary.json")
        dist_utils.barrier()
        return summary


def describe(result: Validation) -> str:
    """The loss validation in words (when there was one), then the generation metrics."""
    parts = [result.describe()] if "loss" in result.metrics else []
    generated = [
        f"{key} {value:.4f}"
        for key, value in result.metrics.items()
        if key.count("/") >= 2 and not key.endswith(GENERATION_COUNTS)
    ]
    return "; ".join(parts + generated)


#: the counts a generation validation reports next to its metrics (kept in metrics.jsonl, left out of the log line)
GENERATION_COUNTS = ("/items", "/skipped_missing_images")


__all__ = [
    "NonFiniteLossError",
    "RunnerBase",
    "check_run_config",
    "job_id_from_config",
    "param_digest",
    "training_device",
]
