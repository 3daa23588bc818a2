"""Process-group setup and rank helpers, plus the "local files only" rule for checkpoints.

Launch with torchrun (it sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) or under
SLURM (``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``); with neither, the job runs as a single process and
every helper here degrades to its single-process meaning (rank 0, world size 1, barriers are no-ops).
"""

from __future__ import annotations

import datetime
import functools
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from minigpt4.common.checkpoints import download_hint
from minigpt4.common.utils import is_url

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


def get_dist_info() -> tuple[int, int]:
    """``(rank, world_size)``."""
    return get_rank(), get_world_size()


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


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` over all ranks (a copy; the input itself is returned in a single process)."""
    if not is_dist_avail_and_initialized():
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / get_world_size()


def destroy_distributed() -> None:
    """Leave the process group (safe to call when none exists)."""
    if is_dist_avail_and_initialized():
        dist.destroy_process_group()


# ----------------------------------------------------------------------------------------------------------
# local files only
# ----------------------------------------------------------------------------------------------------------


def resolve_local_file(path_or_url: str | os.PathLike[str] | None, what: str, search_dirs: Sequence[str] = ()) -> str:
    """An existing local file or folder for ``path_or_url``; minigpt4 never downloads.

    Relative paths are tried against the current directory, then against each of ``search_dirs``.

    Args:
        path_or_url: the configured value.
        what: the config key (``model.vit_path``) or a description of the file, quoted in errors.
        search_dirs: extra directories for relative paths.

    Raises:
        FileNotFoundError: for a URL, an empty value or a path that does not exist; the message names ``what``,
            each distinct place looked at and, for a published file name only
            (:func:`minigpt4.common.checkpoints.download_hint`), what to download from where.
    """
    text = os.fspath(path_or_url) if path_or_url is not None else ""
    hint = download_hint(text, what)
    if not text:
        raise FileNotFoundError(f"{what}: no path set" + (f". {hint}" if hint else ""))
    if is_url(text):
        raise FileNotFoundError(
            f"{what}: {text!r} is a URL, but minigpt4 never downloads files. "
            + (hint or f"Download it and set {what} to the local path")
        )
    path = os.path.expanduser(text)
    if os.path.exists(path):
        return path
    tried = [os.path.abspath(path)]
    if not os.path.isabs(path):
        for base in search_dirs:
            candidate = os.path.join(base, path)
            if os.path.exists(candidate):
                return candidate
            tried.append(os.path.abspath(candidate))
    tried = list(dict.fromkeys(tried))
    message = f"{what}: file not found: {text!r} (looked at {', '.join(tried)})"
    raise FileNotFoundError(message + (f". {hint}" if hint else ""))


def download_cached_file(url: str, check_hash: bool = True, progress: bool = False) -> str:
    """LAVIS's name, kept so its callers fail clearly: a local path passes through; a URL raises.

    Raises:
        FileNotFoundError: always for a URL (minigpt4 never downloads), naming what to fetch from where.
    """
    del check_hash, progress  # accepted for LAVIS compatibility
    return resolve_local_file(url, "a checkpoint file")
