"""The checkpointer: a run folder's checkpoint files, written atomically, found again on resume, pruned.

A run folder ``output_dir/<job id>/`` holds::

    config.yaml                 the merged config of the (latest) start
    metrics.jsonl               one JSON record per log line / validation (see :mod:`minigpt4.runners.metrics`)
    checkpoint_<epoch>.pth      written at the end of every epoch (the published name)
    checkpoint_step<N>.pth      written every ``run.save_freq`` iterations when set
    checkpoint_best.pth         the best checkpoint by ``run.best_metric`` / ``run.best_mode`` (with valid_splits)
    summary.json                written when training finishes
    tensorboard/                TensorBoard scalars

Every checkpoint is written to a temporary file in the same folder, flushed, fsync'ed and renamed over the final
name (``os.replace`` is atomic), so a checkpoint file is either absent or complete, even if the process is killed
mid-save. Temporary files (``.checkpoint_*.tmp``) are ignored when looking for checkpoints and removed at start.

:class:`Checkpointer` puts these together for one run: where to resume from, saving (with ``run.keep_last``
pruning), and which validation result is the best so far (its own ``state_dict()``, stored in every checkpoint).
"""

from __future__ import annotations

import logging
import math
import os
import random
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
import torch.distributed as dist

from minigpt4.common import dist_utils

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint_"
CHECKPOINT_SUFFIX = ".pth"
BEST_CHECKPOINT = "checkpoint_best.pth"
TMP_PREFIX = ".checkpoint_"
TMP_SUFFIX = ".tmp"
CONFIG_FILE = "config.yaml"
BEST_MODES = ("min", "max")


def epoch_checkpoint_name(epoch: int) -> str:
    return f"{CHECKPOINT_PREFIX}{epoch}{CHECKPOINT_SUFFIX}"


def step_checkpoint_name(global_step: int) -> str:
    return f"{CHECKPOINT_PREFIX}step{global_step}{CHECKPOINT_SUFFIX}"


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` to a temporary file next to ``path``, fsync, then rename it over ``path``."""
    _atomic_write(path, "wb", lambda handle: torch.save(obj, handle))


def atomic_write_text(text: str, path: str | os.PathLike[str]) -> None:
    """Write a small text file atomically (same scheme as :func:`atomic_save`)."""
    _atomic_write(path, "w", lambda handle: handle.write(text))


def _atomic_write(path: str | os.PathLike[str], mode: str, write: Callable[[IO[Any]], Any]) -> None:
    """Write through ``write`` into a temporary file in ``path``'s folder, fsync it, rename it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_tmp_files(run_dir: str | os.PathLike[str]) -> None:
    """Delete temporary files left by a process killed while saving."""
    for path in Path(run_dir).glob(f"{TMP_PREFIX}*{TMP_SUFFIX}"):
        logger.info("removing the incomplete checkpoint file %s", path)
        path.unlink(missing_ok=True)


def load_checkpoint_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint on the CPU. Runner checkpoints hold RNG states and configs, hence ``weights_only=False``:
    load only files you trust (your own runs, the released MiniGPT-4 weights)."""
    return torch.load(path, map_location="cpu", weights_only=False)


def load_trainable_weights(model: torch.nn.Module, weights: Mapping[str, torch.Tensor], path: Path) -> None:
    """Load a checkpoint's ``model`` entry for resume: every trainable parameter must be there, nothing else.

    Raises:
        KeyError: naming ``path`` and the missing (or unknown) tensors.
    """
    expected = {name for name, param in model.named_parameters() if param.requires_grad}
    missing = sorted(expected - set(weights))
    if missing:
        raise KeyError(f"{path}: the checkpoint lacks trainable parameters {missing[:5]} (of {len(missing)})")
    result = model.load_state_dict(weights, strict=False)
    if result.unexpected_keys:
        raise KeyError(f"{path}: tensors not in the model: {result.unexpected_keys[:5]}")


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """``(global_step, path)`` of every complete ``checkpoint_*.pth`` (best excluded), oldest first."""
    found = []
    folder = Path(run_dir)
    if not folder.is_dir():
        return []
    for path in folder.glob(f"{CHECKPOINT_PREFIX}*{CHECKPOINT_SUFFIX}"):
        if path.name == BEST_CHECKPOINT:
            continue
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
            step = int(ckpt["global_step"])
        except Exception as err:  # an unreadable file is skipped, not fatal
            logger.warning("ignoring unreadable checkpoint %s: %s", path, err)
            continue
        found.append((step, path))
    return sorted(found, key=lambda item: (item[0], item[1].stat().st_mtime))


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    """The complete checkpoint with the highest global step in ``run_dir``, or None."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def prune_checkpoints(run_dir: str | os.PathLike[str], keep_last: int | None) -> None:
    """Keep the newest ``keep_last`` checkpoints (by global step); ``checkpoint_best.pth`` is never removed."""
    if not keep_last or keep_last <= 0:
        return
    found = list_checkpoints(run_dir)
    for _, path in found[: max(len(found) - keep_last, 0)]:
        logger.info("removing old checkpoint %s (run.keep_last=%d)", path, keep_last)
        path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------------------
# RNG state (one per rank)
# ----------------------------------------------------------------------------------------------------------


def get_rng_state() -> dict[str, Any]:
    """The Python, NumPy, torch CPU and (when in use) CUDA generator states of this process."""
    cuda = None
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = torch.cuda.get_rng_state_all()
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": cuda,
    }


def gather_rng_states() -> list[dict[str, Any]]:
    """Every rank's :func:`get_rng_state`, in rank order (collective under DDP: call it on every rank)."""
    states: list[Any] = [get_rng_state()]
    if dist_utils.get_world_size() > 1:
        states = [None] * dist_utils.get_world_size()
        dist.all_gather_object(states, get_rng_state())
    return states


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------------------------------------
# the checkpointer of one run
# ----------------------------------------------------------------------------------------------------------


class Checkpointer:
    """Checkpoints of one run folder: resume discovery, atomic saves, ``keep_last``, the best checkpoint.

    Args:
        run_dir: the run folder.
        keep_last: keep only the newest N ``checkpoint_*.pth`` (None or <= 0: keep all; best is always kept).
        best_metric: the validation metric that picks ``checkpoint_best.pth`` (``run.best_metric``).
        best_mode: ``min`` (lower is better) or ``max`` (``run.best_mode``).

    Its state (``state_dict()``) is the best value so far and which metric and mode it was measured by.
    Saving writes on rank 0 only; the caller assembles the state (every rank takes part in that) and waits.
    """

    def __init__(
        self, run_dir: str | os.PathLike[str], keep_last: int | None, best_metric: str = "loss", best_mode: str = "min"
    ) -> None:
        if best_mode not in BEST_MODES:
            raise ValueError(f"run.best_mode: expected one of {', '.join(BEST_MODES)}, got {best_mode!r}")
        self.run_dir = Path(run_dir)
        self.keep_last = keep_last
        self.best_metric, self.best_mode = best_metric, best_mode
        self.best_value: float | None = None
        self.last: Path | None = None  # the newest checkpoint this process wrote (best excluded)

    @property
    def best_path(self) -> Path:
        return self.run_dir / BEST_CHECKPOINT

    def find_resume(self, auto_resume: bool, resume_ckpt_path: str | None) -> Path | None:
        """The newest complete checkpoint of the run folder (``auto_resume``), else ``resume_ckpt_path``.

        Global rank 0 decides (it writes the checkpoints) and every rank gets its answer, so that all ranks
        resume from the same step even where the run folder is on each node's own disk and only rank 0's holds
        checkpoints (see :meth:`load_resume_state`).
        """
        found: tuple[str | None, str | None] = (None, None)
        if dist_utils.is_main_process():
            try:
                path = self._find_resume(auto_resume, resume_ckpt_path)
                found = (None if path is None else str(path), None)
            except FileNotFoundError as err:
                found = (None, str(err))
        path_str, error = dist_utils.broadcast_object(found)
        if error is not None:
            raise FileNotFoundError(error)
        return None if path_str is None else Path(path_str)

    def _find_resume(self, auto_resume: bool, resume_ckpt_path: str | None) -> Path | None:
        if auto_resume:
            latest = latest_checkpoint(self.run_dir)
            if latest is not None:
                return latest
        if resume_ckpt_path:
            path = Path(resume_ckpt_path)
            if not path.is_file():
                raise FileNotFoundError(f"run.resume_ckpt_path: no such checkpoint file: {path}")
            return path
        return None

    @staticmethod
    def load_resume_state(path: Path) -> dict[str, Any]:
        """The checkpoint at ``path`` (chosen by rank 0) on every rank.

        A rank reads the file itself where it can; when some rank cannot (a run folder on node-local disks, where
        only rank 0's node holds checkpoints), rank 0 reads it and sends it to every rank instead.
        """
        readable = path.is_file()
        if all(dist_utils.all_gather_object(readable)):
            return load_checkpoint_file(path)
        if dist_utils.is_main_process():
            logger.info("%s is not readable on every node: rank 0 sends it to the others", path)
        state = load_checkpoint_file(path) if dist_utils.is_main_process() else None
        return dist_utils.broadcast_object(state)

    def prepare(self, resuming: bool, config_yaml: str) -> None:
        """Create the folder, drop torn temporary files, refuse to overwrite another run, write config.yaml."""
        if dist_utils.is_main_process():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_tmp_files(self.run_dir)
            if not resuming and list_checkpoints(self.run_dir):
                raise FileExistsError(
                    f"{self.run_dir} already holds checkpoints of an earlier run; set run.auto_resume=True to "
                    "continue it, choose another run.job_name, or remove the folder"
                )
            atomic_write_text(config_yaml, self.run_dir / CONFIG_FILE)
        dist_utils.barrier()

    def save(self, state: dict[str, Any], filename: str) -> Path:
        """Write ``state`` atomically as ``filename``; a regular checkpoint then prunes to ``keep_last``."""
        path = self.run_dir / filename
        atomic_save(state, path)
        logger.info("saved checkpoint %s (epoch %s, step %s)", path, state.get("epoch"), state.get("global_step"))
        if filename != BEST_CHECKPOINT:
            self.last = path
            prune_checkpoints(self.run_dir, self.keep_last)
        return path

    def improves(self, metrics: Mapping[str, float]) -> bool:
        """Whether ``metrics[best_metric]`` beats the best so far (then it becomes the best).

        Raises:
            KeyError: the validation did not report ``best_metric`` (naming the key and what it reported).
        """
        if self.best_metric not in metrics:
            raise KeyError(
                f"run.best_metric={self.best_metric!r} is not among the validation metrics {sorted(metrics)}"
            )
        value = float(metrics[self.best_metric])
        if math.isnan(value):
            return False
        best = self.best_value
        better = best is None or (value < best if self.best_mode == "min" else value > best)
        if better:
            self.best_value = value
        return better

    def state_dict(self) -> dict[str, Any]:
        return {"best_metric": self.best_metric, "best_mode": self.best_mode, "best_value": self.best_value}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """The best value so far, if it was measured by the same metric and mode (else it starts afresh)."""
        if (state.get("best_metric"), state.get("best_mode")) != (self.best_metric, self.best_mode):
            logger.warning(
                "the checkpoint's best checkpoint was chosen by %s (%s), this run uses %s (%s): the best starts afresh",
                state.get("best_metric"),
                state.get("best_mode"),
                self.best_metric,
                self.best_mode,
            )
            return
        self.best_value = state.get("best_value")
