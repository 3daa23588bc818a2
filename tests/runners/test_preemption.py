"""Preemption on the toy runner: a SIGTERM/SIGUSR1 mid-run finishes the step, checkpoints, exits with status 75,
and a resume equals the uninterrupted run (single process; torchrun is in tests/test_preemption.py)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from minigpt4.runners import checkpointer as ckpt_io
from minigpt4.runners.metrics import MetricsLog
from minigpt4.runners.preemption import PREEMPTED_EXIT_CODE, Preempted, PreemptionGuard
from tests.runners.toy import make_runner


def _signal_at(runner, call: int, sig: signal.Signals) -> None:
    """Send ``sig`` to this process during the task's ``call``-th train_step (1-based), after its forward."""
    original, calls = runner.task.train_step, {"n": 0}

    def step(model, samples):
        calls["n"] += 1
        loss = original(model, samples)
        if calls["n"] == call:
            os.kill(os.getpid(), sig)
        return loss

    runner.task.train_step = step


def _train_losses(run_dir: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in MetricsLog(run_dir / "metrics.jsonl").read() if r["kind"] == "train"]


@pytest.mark.parametrize(
    ("sig", "call", "accum", "stopped_at"),
    [
        (signal.SIGTERM, 2, 1, 2),  # mid-epoch: the step in progress finishes, then a step checkpoint
        (signal.SIGUSR1, 5, 2, 6),  # inside an accumulation window: it runs to the window's end
        (signal.SIGTERM, 4, 1, 4),  # the epoch's last step: the epoch's validation and checkpoint come first
    ],
)
def test_signal_checkpoints_stops_and_resumes_exactly(tmp_path, sig, call, accum, stopped_at):
    run = {"accum_grad_iters": accum, "valid_splits": ["val"], "auto_resume": True}
    make_runner(tmp_path / "ref", **run).train()
    ref_dir, run_dir = tmp_path / "ref" / "toy", tmp_path / "run" / "toy"

    runner = make_runner(tmp_path / "run", **run)
    _signal_at(runner, call, sig)
    previous = signal.getsignal(sig)
    with pytest.raises(Preempted) as stopped:
        runner.train()
    assert stopped.value.code == PREEMPTED_EXIT_CODE and stopped.value.global_step == stopped_at
    assert "preempted" in str(stopped.value) and f"this rank: {sig.name}" in str(stopped.value)
    assert signal.getsignal(sig) is previous  # the handler is removed again
    saved = ckpt_io.load_checkpoint_file(stopped.value.checkpoint)
    assert saved["global_step"] == stopped_at
    assert Path(stopped.value.checkpoint).name in ("checkpoint_0.pth", f"checkpoint_step{stopped_at}.pth")
    assert not (run_dir / "summary.json").exists()

    summary = make_runner(tmp_path / "run", **run).train()
    assert summary["steps_this_run"] == 8 - stopped_at
    for name in ("checkpoint_0.pth", "checkpoint_1.pth"):
        got, want = (ckpt_io.load_checkpoint_file(d / name)["model"] for d in (run_dir, ref_dir))
        for key in want:
            assert torch.allclose(got[key], want[key], atol=1e-6, rtol=0), (name, key)
    got, want = _train_losses(run_dir), _train_losses(ref_dir)
    assert [s for s, _ in got] == [s for s, _ in want] == list(range(1, 9))
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in want], abs=1e-6)
    vals = [r["step"] for r in MetricsLog(run_dir / "metrics.jsonl").read() if r["kind"] == "val"]
    assert vals == [4, 8]


def test_the_guard_records_the_first_signal_and_restores_the_handlers():
    before = signal.getsignal(signal.SIGTERM)
    with PreemptionGuard() as guard:
        assert not guard.requested
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)
        assert guard.received == signal.SIGUSR1
    assert signal.getsignal(signal.SIGTERM) is before
