"""What a training job is before anything heavy is built: its cross-key checks, its id, its device.

``train.py`` runs :func:`check_run_config` and :func:`job_id_from_config` before building datasets or models.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from minigpt4.common import dist_utils
from minigpt4.common.utils import now
from minigpt4.runners.checkpointer import BEST_MODES
from minigpt4.runners.precision import check_amp_dtype


def check_run_config(run_cfg: Any, iters_per_epoch: int | None = None) -> None:
    """Checks across ``run`` keys that the schema cannot express (train.py runs them before building anything).

    Checkpoints and epochs end on optimizer steps, so their periods must be multiples of ``accum_grad_iters``.

    Raises:
        ValueError: naming the offending key.
    """
    accum = run_cfg.accum_grad_iters
    iters = iters_per_epoch if iters_per_epoch is not None else run_cfg.iters_per_epoch
    check_amp_dtype(run_cfg.amp_dtype)
    if run_cfg.best_mode not in BEST_MODES:
        raise ValueError(f"run.best_mode: expected one of {', '.join(BEST_MODES)}, got {run_cfg.best_mode!r}")
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


def training_device(run_cfg: Any) -> torch.device:
    """The device to train on, from ``run.device`` (and the local GPU picked by ``init_distributed_mode``)."""
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


def param_digest(state: dict[str, Tensor]) -> str:
    """A SHA-256 of a state dict's names and bytes (to check that ranks hold the same weights)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").reshape(-1)
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()
