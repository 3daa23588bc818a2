"""Multi-node launch: two torchrun launchers on 127.0.0.1 (``--nnodes 2``, c10d rendezvous, one process each),
started by hand or by ``scripts/slurm/stage1.sbatch`` under a stand-in for srun, train exactly as one launcher
running two processes, writing into one shared run folder."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from minigpt4.runners import checkpointer as ckpt
from tests.runners import helpers as h

TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
TIMEOUT_S = 300
SBATCH = h.REPO_ROOT / "scripts" / "slurm" / "stage1.sbatch"

# Stand-ins for SLURM on one machine: srun runs its command once per node of the allocation, in parallel, with the
# variables a real srun task gets; scontrol lists the allocation's host names, the first one the head node.
FAKE_SRUN = """#!/bin/bash
while [[ "$1" == --* ]]; do shift; done
pids=()
for ((node = 0; node < SLURM_NNODES; node++)); do
  SLURM_NODEID=$node SLURM_PROCID=$node SLURM_LOCALID=0 SLURM_NTASKS=$SLURM_NNODES "$@" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
"""
FAKE_SCONTROL = """#!/bin/bash
[ "$1 $2" = "show hostnames" ] || exit 2
printf '127.0.0.1\\n127.0.0.2\\n'
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _config(world: dict, root: Path) -> Path:
    # stage-1 shards split over ranks, accumulation (DDP's no_sync), a mid-epoch checkpoint (gathers every rank's
    # data position and RNG state): places where each process must know its global rank
    run = h.run_section(
        root / "out",
        max_epoch=2,
        iters_per_epoch=4,
        accum_grad_iters=2,
        save_freq=2,
        init_lr=3e-2,
    )
    return h.write_config(root / "train.yaml", h.model_section(world), h.stage1_datasets(world), run)


def _wait(procs: list[subprocess.Popen], logs: list[Path], what: str) -> None:
    """Wait for the launchers; on failure, show the end of each failed one's output."""
    try:
        for proc in procs:
            proc.wait(timeout=TIMEOUT_S)
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    tails = [f"{log}:\n{log.read_text()[-3000:]}" for proc, log in zip(procs, logs) if proc.returncode != 0]
    assert not tails, f"{what} failed:\n" + "\n\n".join(tails)


def _env(**extra: str) -> dict[str, str]:
    # torchrun sets OMP_NUM_THREADS=1 only when it starts several processes; the same thread count on both sides
    # keeps the CPU kernels' summation order, hence the results, bit for bit the same
    return {**h.subprocess_env(), "OMP_NUM_THREADS": "1", **extra}


def _popen(cmd: list[str], env: dict[str, str], log: Path, cwd: Path = h.REPO_ROOT) -> subprocess.Popen:
    with log.open("w") as out:  # a file, not a pipe: a chatty run cannot fill a pipe nobody reads yet
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _launch(args: list[str], cfg: Path, log: Path, options: tuple[str, ...] = (), cwd: Path = h.REPO_ROOT):
    cmd = [*TORCHRUN, *args, str(h.TRAIN_PY), "--cfg-path", str(cfg)]
    return _popen(cmd + (["--options", *options] if options else []), _env(), log, cwd)


def _single_launcher(cfg: Path) -> None:
    log = cfg.parent / "launcher.log"
    _wait([_launch(["--standalone", "--nproc-per-node", "2"], cfg, log)], [log], "torchrun --nproc-per-node 2")


def _two_launchers(
    cfg: Path,
    node_options: Callable[[int], tuple[str, ...]] = lambda node_rank: (),
    node_cwd: Callable[[int], Path] = lambda node_rank: h.REPO_ROOT,
) -> None:
    """``node_options(node_rank)`` / ``node_cwd(node_rank)``: the ``--options`` and the working directory of that
    node's launcher."""
    endpoint = f"127.0.0.1:{_free_port()}"
    logs = [cfg.parent / f"launcher_node{node_rank}.log" for node_rank in (0, 1)]
    procs = [
        _launch(
            [
                "--nnodes",
                "2",
                "--node-rank",
                str(node_rank),
                "--nproc-per-node",
                "1",
                "--rdzv-backend",
                "c10d",
                "--rdzv-endpoint",
                endpoint,
                "--rdzv-id",
                "multinode-test",
                "--max-restarts",
                "0",
            ],
            cfg,
            logs[node_rank],
            node_options(node_rank),
            node_cwd(node_rank),
        )
        for node_rank in (0, 1)
    ]
    _wait(procs, logs, f"two torchrun launchers on {endpoint}")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return h.build_world(tmp_path_factory.mktemp("multinode_world"))


@pytest.fixture(scope="module")
def reference(world, tmp_path_factory):
    """One launcher, two processes: ``torchrun --standalone --nproc-per-node 2``."""
    root = tmp_path_factory.mktemp("one_launcher")
    _single_launcher(_config(world, root))
    return root / "out" / "job"


def _assert_same_run(got: Path, want: Path, rank1_dir: Path | None = None) -> None:
    """``got`` (rank 0's run folder; rank 1's is ``rank1_dir``, default the same) is the run of ``want``."""
    summary = json.loads((got / "summary.json").read_text())
    assert summary["global_step"] == 8 and summary["ranks_in_sync"] and len(summary["rank_param_digests"]) == 2
    ckpt = torch.load(got / "checkpoint_1.pth", map_location="cpu", weights_only=False)
    assert ckpt["world_size"] == 2 and set(ckpt["data"]["ranks"]) == {0, 1}
    # one writer for the shared files: every step logged once, by global rank 0; each rank its own log
    assert [step for step, _ in h.train_losses(got)] == list(range(1, 9))
    assert (got / "log_rank0.txt").is_file() and ((rank1_dir or got) / "log_rank1.txt").is_file()
    assert sorted(p.name for p in got.glob("checkpoint_*.pth")) == sorted(p.name for p in want.glob("checkpoint_*.pth"))
    # the same run, to the bit: gloo sums two ranks' gradients the same way whichever launcher holds them
    assert h.train_losses(got) == h.train_losses(want)
    h.assert_same_weights(h.trainable(got / "checkpoint_1.pth"), h.trainable(want / "checkpoint_1.pth"), atol=0.0)


def test_two_launchers_train_as_one_launcher_with_two_processes(world, reference, tmp_path):
    _two_launchers(_config(world, tmp_path))
    _assert_same_run(tmp_path / "out" / "job", reference)


def test_slurm_script_starts_one_launcher_per_node(world, reference, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    path = os.pathsep.join([str(bin_dir), os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    env = _env(
        PATH=path,
        SLURM_SUBMIT_DIR=str(h.REPO_ROOT),
        SLURM_JOB_NODELIST="node[1-2]",
        SLURM_NNODES="2",
        SLURM_JOB_ID="4242",
        GPUS_PER_NODE="1",
        MASTER_PORT=str(_free_port()),
        CONFIG=str(_config(world, tmp_path)),
    )
    log = tmp_path / "sbatch.log"
    _wait([_popen(["bash", str(SBATCH)], env, log)], [log], "scripts/slurm/stage1.sbatch")
    _assert_same_run(tmp_path / "out" / "job", reference)


def test_resume_with_node_local_run_folders(world, reference, tmp_path):
    """Each node writes into a folder on its own disk, as with a relative ``run.output_dir`` and each launcher in
    its own working directory: only rank 0's folder holds checkpoints, and rank 1 cannot read that path. Resuming,
    rank 0 picks the checkpoint and sends it to rank 1, which has none of its own."""
    cfg = _config(world, tmp_path)
    node_dirs = [tmp_path / f"node{node_rank}" for node_rank in (0, 1)]
    for node_dir in node_dirs:
        node_dir.mkdir()
    options = ("run.output_dir=out", "run.auto_resume=True")
    _two_launchers(cfg, lambda node_rank: options, lambda node_rank: node_dirs[node_rank])
    run0, run1 = node_dirs[0] / "out" / "job", node_dirs[1] / "out" / "job"
    assert not list(run1.glob("checkpoint_*.pth")) and (run1 / "log_rank1.txt").is_file()
    # as if the job had been killed right after its step-4 checkpoint: what it wrote later is gone
    later = [path for step, path in ckpt.list_checkpoints(run0) if step > 4]
    assert later
    for path in [*later, run0 / "summary.json"]:
        path.unlink()
    assert ckpt.latest_checkpoint(run0).name in ("checkpoint_step4.pth", "checkpoint_0.pth")
    _two_launchers(cfg, lambda node_rank: options, lambda node_rank: node_dirs[node_rank])
    log0 = (run0 / "log_rank0.txt").read_text()
    assert "not readable on every node: rank 0 sends it to the others" in log0
    assert "from step 4" in log0 and "from step 4" in (run1 / "log_rank1.txt").read_text()
    _assert_same_run(run0, reference, rank1_dir=run1)
