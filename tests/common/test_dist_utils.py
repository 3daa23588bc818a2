"""Distribution helpers: single-process defaults, launcher env parsing, a real 2-process gloo job."""

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from omegaconf import OmegaConf

from minigpt4.common import dist_utils
from minigpt4.common.checkpoints import KNOWN_CHECKPOINTS, find_known_checkpoint
from minigpt4.common.dist_utils import (
    DistEnv,
    all_reduce_mean,
    barrier,
    destroy_distributed,
    get_rank,
    get_world_size,
    init_distributed_mode,
    is_dist_avail_and_initialized,
    is_main_process,
    main_process,
    read_dist_env,
)
from minigpt4.common.run_config import RunConfig

LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NNODES")


@pytest.fixture
def no_launcher(monkeypatch):
    for name in LAUNCHER_VARS:
        monkeypatch.delenv(name, raising=False)


def _run_cfg(**overrides):
    return OmegaConf.merge(OmegaConf.structured(RunConfig), {"device": "cpu", **overrides})


def test_single_process_defaults(no_launcher):
    run = _run_cfg()
    assert run.distributed is True  # the schema default; init decides
    init_distributed_mode(run)
    assert (run.distributed, run.world_size, run.rank, run.gpu) == (False, 1, 0, None)
    assert not is_dist_avail_and_initialized()
    assert (get_rank(), get_world_size(), is_main_process()) == (0, 1, True)
    barrier()  # a no-op
    destroy_distributed()  # safe without a process group


def test_main_process_decorator_runs_on_rank_zero(no_launcher):
    calls = []

    @main_process
    def save(x):
        calls.append(x)
        return x * 2

    assert save(3) == 6
    assert calls == [3]
    assert save.__name__ == "save"


def test_main_process_decorator_skips_other_ranks(monkeypatch):
    monkeypatch.setattr(dist_utils, "get_rank", lambda: 1)

    @main_process
    def save():
        raise AssertionError("must not run on rank 1")

    assert save() is None


def test_read_dist_env_torchrun():
    env = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "SLURM_PROCID": "0"}
    assert read_dist_env(env) == DistEnv(rank=3, world_size=8, local_rank=1, launcher="torchrun")


def test_read_dist_env_slurm():
    env = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1"}
    assert read_dist_env(env) == DistEnv(rank=5, world_size=8, local_rank=1, launcher="slurm")


def test_read_dist_env_none():
    assert read_dist_env({"PATH": "/bin"}) is None


def test_slurm_single_node_rendezvous_on_localhost():
    denv = DistEnv(rank=0, world_size=2, local_rank=0, launcher="slurm")
    url = dist_utils._init_method(_run_cfg(), denv, {"SLURM_NNODES": "1", "MASTER_PORT": "1234"})
    assert url == "tcp://127.0.0.1:1234"
    assert dist_utils._init_method(_run_cfg(), denv, {"MASTER_ADDR": "node1"}) == "env://"


def test_slurm_multi_node_needs_master_addr():
    denv = DistEnv(rank=0, world_size=16, local_rank=0, launcher="slurm")
    with pytest.raises(RuntimeError, match="MASTER_ADDR"):
        dist_utils._init_method(_run_cfg(), denv, {"SLURM_NNODES": "2"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(local_rank: int, port: int, out_dir: str) -> None:
    """One rank of a 2-process job, with the environment torchrun would give it."""
    for name in LAUNCHER_VARS:
        os.environ.pop(name, None)
    os.environ.update(
        RANK=str(local_rank), WORLD_SIZE="2", LOCAL_RANK=str(local_rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    run = _run_cfg()
    init_distributed_mode(run)
    value = torch.tensor([float(get_rank() + 1)])
    total = value.clone()
    dist.all_reduce(total)
    result = {
        "rank": run.rank,
        "world_size": run.world_size,
        "distributed": run.distributed,
        "backend": dist.get_backend(),
        "get_rank": get_rank(),
        "get_world_size": get_world_size(),
        "main": is_main_process(),
        "sum": total.item(),
        "mean": all_reduce_mean(value).item(),
    }
    barrier()
    with open(os.path.join(out_dir, f"rank{local_rank}.json"), "w") as f:
        json.dump(result, f)
    destroy_distributed()


def test_two_process_gloo_all_reduce(tmp_path):
    # fork: the children reuse the already-imported package, so this takes seconds
    mp.start_processes(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True, start_method="fork")
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for rank, res in enumerate(results):
        assert res["rank"] == res["get_rank"] == rank
        assert res["world_size"] == res["get_world_size"] == 2
        assert res["distributed"] is True
        assert res["backend"] == "gloo"
        assert res["main"] is (rank == 0)
        assert res["sum"] == 3.0
        assert res["mean"] == 1.5
    assert not is_dist_avail_and_initialized()  # the parent never joined a group


def test_checkpoint_table():
    names = {e.name for e in KNOWN_CHECKPOINTS}
    assert {
        "eva_vit_g.pth",
        "blip2_pretrained_flant5xxl.pth",
        "pretrained_minigpt4.pth",
        "pretrained_minigpt4_llama2_7b.pth",
        "vicuna-7b-v0",
        "vicuna-13b-v0",
        "Llama-2-7b-chat-hf",
    } <= names
    keys = {e.config_key for e in KNOWN_CHECKPOINTS}
    assert keys == {"model.vit_path", "model.q_former_model", "model.llama_model", "model.ckpt"}
    assert find_known_checkpoint("/ckpts/pretrained_minigpt4_7b.pth").name == "prerained_minigpt4_7b.pth"
    assert find_known_checkpoint("/somewhere/else.pth") is None


def test_single_process_cuda_logic_on_cpu(no_launcher, monkeypatch):
    """CPU stand-in of the test below: the same decision, with CUDA reported present (no CUDA call is made)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    run = _run_cfg(device="cuda")
    init_distributed_mode(run)
    assert run.gpu == 0 and run.distributed is False


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="runs init_distributed_mode with a real CUDA device; its logic runs on a CPU in "
    "test_single_process_cuda_logic_on_cpu",
)
def test_single_process_cuda_sets_gpu(no_launcher):
    run = _run_cfg(device="cuda")
    init_distributed_mode(run)
    assert run.gpu == 0 and run.distributed is False
