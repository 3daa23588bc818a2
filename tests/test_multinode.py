"""Multi-node launch: two torchrun launchers on 127.0.0.1 (``--nnodes 2``, c10d rendezvous, one process each)
train exactly as one launcher running two processes, writing into one shared run folder."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import torch

from tests.runners import helpers as h

TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
TIMEOUT_S = 300


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


def _wait(procs: list[subprocess.Popen], what: str) -> None:
    try:
        for proc in procs:
            proc.wait(timeout=TIMEOUT_S)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    failed = [p for p in procs if p.returncode != 0]
    tails = "\n\n".join(p.stderr.read()[-3000:] for p in failed)
    for proc in procs:
        proc.stderr.close()
    assert not failed, f"{what} failed:\n{tails}"


def _launch(args: list[str], cfg: Path) -> subprocess.Popen:
    # torchrun sets OMP_NUM_THREADS=1 only when it starts several processes; the same thread count on both sides
    # keeps the CPU kernels' summation order, hence the results, bit for bit the same
    env = {**h.subprocess_env(), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [*TORCHRUN, *args, str(h.TRAIN_PY), "--cfg-path", str(cfg)],
        cwd=h.REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _single_launcher(cfg: Path) -> None:
    _wait([_launch(["--standalone", "--nproc-per-node", "2"], cfg)], "torchrun --nproc-per-node 2")


def _two_launchers(cfg: Path) -> None:
    endpoint = f"127.0.0.1:{_free_port()}"
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
        )
        for node_rank in (0, 1)
    ]
    _wait(procs, f"two torchrun launchers on {endpoint}")


def test_two_launchers_train_as_one_launcher_with_two_processes(tmp_path):
    world = h.build_world(tmp_path / "world")
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one_cfg, two_cfg = _config(world, tmp_path / "one"), _config(world, tmp_path / "two")
    _single_launcher(one_cfg)
    _two_launchers(two_cfg)
    want, got = tmp_path / "one" / "out" / "job", tmp_path / "two" / "out" / "job"

    summary = json.loads((got / "summary.json").read_text())
    assert summary["global_step"] == 8 and summary["ranks_in_sync"] and len(summary["rank_param_digests"]) == 2
    ckpt = torch.load(got / "checkpoint_1.pth", map_location="cpu", weights_only=False)
    assert ckpt["world_size"] == 2 and set(ckpt["data"]["ranks"]) == {0, 1}
    # one writer for the shared files: every step logged once, by global rank 0; each rank its own log
    assert [step for step, _ in h.train_losses(got)] == list(range(1, 9))
    assert (got / "log_rank0.txt").is_file() and (got / "log_rank1.txt").is_file()
    assert sorted(p.name for p in got.glob("checkpoint_*.pth")) == sorted(p.name for p in want.glob("checkpoint_*.pth"))

    # the same run, to the bit: gloo sums two ranks' gradients the same way whichever launcher holds them
    assert h.train_losses(got) == h.train_losses(want)
    h.assert_same_weights(h.trainable(got / "checkpoint_1.pth"), h.trainable(want / "checkpoint_1.pth"), atol=0.0)
