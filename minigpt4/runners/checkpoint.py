"""Checkpoint files of a run folder: atomic writes, finding the newest complete one, pruning, RNG state.

A run folder ``output_dir/<job id>/`` holds::

    config.yaml                 the merged config of the (latest) start
    metrics.jsonl               one JSON record per log line / validation (kept consistent on resume)
    checkpoint_<epoch>.pth      written at the end of every epoch (the published name)
    checkpoint_step<N>.pth      written every ``run.save_freq`` iterations when set
    checkpoint_best.pth         the checkpoint with the lowest validation loss (when valid_splits are set)
    summary.json                written when training finishes
    tensorboard/                TensorBoard scalars

Every checkpoint is written to a temporary file in the same folder, flushed, fsync'ed and renamed over the final
name (``os.replace`` is atomic), so a checkpoint file is either absent or complete, even if the process is killed
mid-save. Temporary files (``.checkpoint_*.tmp``) are ignored when looking for checkpoints and removed at start.
"""

from __future__ import annotations

import json
import logging
import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint_"
CHECKPOINT_SUFFIX = ".pth"
BEST_CHECKPOINT = "checkpoint_best.pth"
TMP_PREFIX = ".checkpoint_"
TMP_SUFFIX = ".tmp"
METRICS_FILE = "metrics.jsonl"


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


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------------------------------------
# metrics.jsonl
# ----------------------------------------------------------------------------------------------------------


class MetricsLog:
    """Append-only JSON lines; on resume, records after the resumed step are dropped so the log continues
    exactly where the checkpoint left off (as if the run had never been interrupted)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def truncate_after(self, global_step: int) -> None:
        """Keep the records with ``step <= global_step`` (and drop a torn last line)."""
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if int(record.get("step", 0)) <= global_step:
                kept.append(line)
        atomic_write_text("".join(f"{line}\n" for line in kept), self.path)

    def reset(self) -> None:
        self.path.write_text("", encoding="utf-8")

    def append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
