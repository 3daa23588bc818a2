"""Preemption end to end: SIGTERM reaches a running train.py (single process) or one rank of a 2-process
torchrun job (gloo); the job finishes its step, writes a step checkpoint, exits with status 75 and a clear log
line; ``run.auto_resume`` then gives the uninterrupted run's weights and losses (the kill -9 tolerance, 1e-6)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minigpt4.runners.preemption import PREEMPTED_EXIT_CODE
from tests.runners import helpers as h

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(h.TRAIN_PY)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return h.build_world(tmp_path_factory.mktemp("preempt_world"))


def _config(world, root: Path, **run):
    # no run.save_freq: the only mid-epoch checkpoint is the one the signal makes
    run = h.run_section(root / "out", max_epoch=2, iters_per_epoch=6, auto_resume=True, init_lr=3e-2, **run)
    return h.write_config(root / "train.yaml", h.model_section(world), h.align_datasets(world), run)


def _run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(
        cmd, cwd=h.REPO_ROOT, env=h.subprocess_env(), capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def _wait_for_step(proc: subprocess.Popen, run_dir: Path, step: int, deadline_s: float = 240) -> None:
    """Wait until ``metrics.jsonl`` holds the train record of ``step`` (the job is mid-epoch, running)."""
    deadline = time.time() + deadline_s
    while not any(r["kind"] == "train" and r["step"] >= step for r in _records(run_dir)):
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "the training made no progress"
        time.sleep(0.01)


def _records(run_dir: Path) -> list[dict]:
    try:
        return h.read_metrics(run_dir)
    except (FileNotFoundError, ValueError):  # not written yet, or a line being written
        return []


def _rank_pid(launcher: subprocess.Popen, rank: int) -> int:
    """The pid of the torchrun worker with RANK=``rank`` (a child of the launcher)."""
    children = subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True, text=True).stdout.split()
    for pid in map(int, children):
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in env:
            return pid
    raise AssertionError(f"no worker with RANK={rank} among {children}")


def _compare_with_reference(run_dir: Path, ref_dir: Path, stopped_after: int) -> None:
    for name in ("checkpoint_0.pth", "checkpoint_1.pth"):
        h.assert_same_weights(h.trainable(run_dir / name), h.trainable(ref_dir / name))  # atol 1e-6
    got, want = h.train_losses(run_dir), h.train_losses(ref_dir)
    assert [s for s, _ in got] == [s for s, _ in want] == list(range(1, 13))
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in want], abs=1e-6)
    assert stopped_after < 12


def _stopped_step(run_dir: Path) -> int:
    steps = sorted(int(p.stem.removeprefix("checkpoint_step")) for p in run_dir.glob("checkpoint_step*.pth"))
    assert len(steps) == 1, steps
    return steps[0]


def test_sigterm_to_a_single_process_checkpoints_and_resumes_exactly(world, tmp_path):
    reference = _config(world, tmp_path / "ref")
    _run(h.train_command(reference))
    cfg = _config(world, tmp_path / "run")
    run_dir = tmp_path / "run" / "out" / "job"
    proc = subprocess.Popen(h.train_command(cfg), cwd=h.REPO_ROOT, env=h.subprocess_env(), stderr=subprocess.PIPE)
    try:
        _wait_for_step(proc, run_dir, 2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == PREEMPTED_EXIT_CODE, err.decode()[-3000:]
    stopped = _stopped_step(run_dir)
    log = (run_dir / "log.txt").read_text()
    assert f"stopped after step {stopped} with the checkpoint {run_dir / f'checkpoint_step{stopped}.pth'}" in log
    assert "this rank: SIGTERM" in log and f"exiting with status {PREEMPTED_EXIT_CODE}" in log
    assert stopped < 6  # mid-epoch

    _run(h.train_command(cfg))  # the same command (auto_resume: True in the config)
    _compare_with_reference(run_dir, tmp_path / "ref" / "out" / "job", stopped)


def test_sigterm_to_one_torchrun_rank_stops_both_at_the_same_step(world, tmp_path):
    """The signal reaches rank 1 only: both ranks stop after the same step and one checkpoint is written."""
    reference = _config(world, tmp_path / "ref", accum_grad_iters=2)
    _run([*TORCHRUN, "--cfg-path", str(reference)])
    cfg = _config(world, tmp_path / "run", accum_grad_iters=2)
    run_dir = tmp_path / "run" / "out" / "job"
    proc = subprocess.Popen(
        [*TORCHRUN, "--cfg-path", str(cfg)], cwd=h.REPO_ROOT, env=h.subprocess_env(), stderr=subprocess.PIPE
    )
    try:
        _wait_for_step(proc, run_dir, 1)
        subprocess.run(["kill", "-TERM", str(_rank_pid(proc, 1))], check=True)
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = err.decode()
    assert proc.returncode != 0 and f"exitcode  : {PREEMPTED_EXIT_CODE}" in err, err[-3000:]
    stopped = _stopped_step(run_dir)
    assert stopped % 2 == 0  # an optimizer-step boundary (accum_grad_iters: 2)
    for log_name, here in (("log.txt", "no signal on this rank"), ("log_rank1.txt", "SIGTERM")):
        log = (run_dir / log_name).read_text()
        assert f"reached 1 of 2 rank(s) (this rank: {here}); stopped after step {stopped}" in log, log_name

    _run([*TORCHRUN, "--cfg-path", str(cfg)])
    _compare_with_reference(run_dir, tmp_path / "ref" / "out" / "job", stopped)
