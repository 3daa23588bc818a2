"""Process-group setup and rank helpers.

Launch with torchrun (it sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) or under
SLURM (``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``); with neither, the job runs as a single process and
every helper here degrades to its single-process meaning (rank 0, world size 1, barriers are no-ops).
"""

from __future__ import annotations

import datetime
import functools
import gc
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

# Generous: rank 0 may spend minutes writing a checkpoint while the others wait in a barrier.
DIST_TIMEOUT = datetime.timedelta(hours=2)
DEFAULT_MASTER_PORT = 29500


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job, as the launcher described it."""

    rank: int
    world_size: int
    local_rank: int
    launcher: str  # "torchrun" | "slurm"


def read_dist_env(environ: Mapping[str, str] | None = None) -> DistEnv | None:
    """The launcher's description of this process, or None when started as a plain single process."""
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return DistEnv(
            rank=int(env["RANK"]),
            world_size=int(env["WORLD_SIZE"]),
            local_rank=int(env.get("LOCAL_RANK", "0")),
            launcher="torchrun",
        )
    if "SLURM_PROCID" in env:
        world_size = int(env.get("SLURM_NTASKS", env.get("SLURM_NPROCS", "1")))
        return DistEnv(
            rank=int(env["SLURM_PROCID"]),
            world_size=world_size,
            local_rank=int(env.get("SLURM_LOCALID", "0")),
            launcher="slurm",
        )
    return None


def _init_method(run_cfg: Any, denv: DistEnv, environ: Mapping[str, str]) -> str:
    """``run.dist_url``, except that under SLURM without MASTER_ADDR a single node rendezvous on localhost."""
    url = run_cfg.dist_url
    if url != "env://" or denv.launcher != "slurm" or "MASTER_ADDR" in environ:
        return url
    if environ.get("SLURM_NNODES", "1") != "1":
        raise RuntimeError(
            "multi-node SLURM job without MASTER_ADDR: export MASTER_ADDR (the first node's host name) and "
            "MASTER_PORT in the batch script, or launch with torchrun"
        )
    return f"tcp://127.0.0.1:{environ.get('MASTER_PORT', DEFAULT_MASTER_PORT)}"


def init_distributed_mode(run_cfg: Any) -> None:
    """Join the process group the launcher set up, and record the result in ``run_cfg``.

    Sets ``run_cfg.distributed``, ``world_size``, ``rank``, ``gpu`` (local CUDA device index or None) and
    ``dist_backend``. Backend: nccl when ``run_cfg.device`` is ``cuda`` and CUDA is available, gloo otherwise.
    Without a launcher environment the job is a single process and no process group is created.

    Args:
        run_cfg: the ``run`` section (a DictConfig validated against ``RunConfig``) or any attribute object.
    """
    denv = read_dist_env()
    if denv is None:
        run_cfg.distributed = False
        run_cfg.world_size = 1
        run_cfg.rank = 0
        run_cfg.gpu = 0 if _use_cuda(run_cfg) else None
        logger.info("not launched by torchrun or SLURM: running as a single process")
        return
    use_cuda = _use_cuda(run_cfg)
    if str(run_cfg.device).startswith("cuda") and not use_cuda:
        logger.warning("run.device is %r but CUDA is not available: using the gloo backend", run_cfg.device)
    gpu = None
    if use_cuda:
        gpu = denv.local_rank % max(torch.cuda.device_count(), 1)
        torch.cuda.set_device(gpu)
    backend = "nccl" if use_cuda else "gloo"
    run_cfg.distributed = True
    run_cfg.world_size = denv.world_size
    run_cfg.rank = denv.rank
    run_cfg.gpu = gpu
    run_cfg.dist_backend = backend
    init_method = _init_method(run_cfg, denv, os.environ)
    logger.info(
        "distributed init (rank %d of %d, local rank %d, %s, backend %s): %s",
        denv.rank,
        denv.world_size,
        denv.local_rank,
        denv.launcher,
        backend,
        init_method,
    )
    if not dist.is_initialized():
        dist.init_process_group(
            backend=backend,
            init_method=init_method,
            world_size=denv.world_size,
            rank=denv.rank,
            timeout=DIST_TIMEOUT,
        )
    barrier()


def _use_cuda(run_cfg: Any) -> bool:
    return str(run_cfg.device).startswith("cuda") and torch.cuda.is_available()


def is_dist_avail_and_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_dist_avail_and_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_dist_avail_and_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def main_process(func: F) -> F:
    """Decorator: run ``func`` on rank 0 only; other ranks get None."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if is_main_process():
            return func(*args, **kwargs)
        return None

    return wrapper  # type: ignore[return-value]


def barrier() -> None:
    """Wait for every rank; a no-op in a single process."""
    if not is_dist_avail_and_initialized():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (pickled; for small control data); ``obj`` itself in one process."""
    if not is_dist_avail_and_initialized():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order; ``[obj]`` in one process."""
    if not is_dist_avail_and_initialized():
        return [obj]
    gathered: list[Any] = [None] * get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` over all ranks (a copy; the input itself is returned in a single process)."""
    if not is_dist_avail_and_initialized():
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / get_world_size()


def destroy_distributed() -> None:
    """Leave the process group (safe to call when none exists).

    Unreachable objects are collected first, so that a DDP wrapper caught in a reference cycle does not keep the
    group's backend (and its worker threads) alive into interpreter shutdown, where destroying it can abort the
    process after a finished run; callers drop their own references to models and runners before calling this.
    No barrier here: a rank that failed must not wait for ranks that are still in a collective.
    """
    if is_dist_avail_and_initialized():
        gc.collect()
        dist.destroy_process_group()
        gc.collect()
