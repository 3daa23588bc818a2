"""``run.parallelism: fsdp`` under ``torchrun --nproc-per-node 2`` (gloo, CPU): the same losses and final
projection weights as ddp (within 1e-5), about half the frozen-parameter bytes per rank with the LLM, the ViT and
the Q-Former sharded, checkpoints in the published format, and an exact resume after a preemption."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from minigpt4.runners.preemption import PREEMPTED_EXIT_CODE
from tests.runners import helpers as h

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(h.TRAIN_PY)]
SHARDED = ["llama_model", "visual_encoder", "Qformer"]
TOLERANCE = 1e-5  # gradients are averaged by one flat all-reduce (fsdp) or DDP's buckets: the sums may round apart


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return h.build_world(tmp_path_factory.mktemp("fsdp_world"))


def _config(world, root: Path, parallelism: str) -> Path:
    run = h.run_section(
        root / "out",
        max_epoch=2,
        iters_per_epoch=4,
        accum_grad_iters=2,
        init_lr=3e-2,
        auto_resume=True,
        parallelism=parallelism,
        fsdp_modules=SHARDED,
    )
    return h.write_config(root / "train.yaml", h.model_section(world), h.align_datasets(world), run)


def _torchrun(cfg: Path) -> dict:
    result = subprocess.run(
        [*TORCHRUN, "--cfg-path", str(cfg)], cwd=h.REPO_ROOT, env=h.subprocess_env(), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads((cfg.parent / "out" / "job" / "summary.json").read_text())


@pytest.fixture(scope="module")
def runs(world, tmp_path_factory):
    root = tmp_path_factory.mktemp("fsdp_runs")
    return {
        mode: (_torchrun(_config(world, root / mode, mode)), root / mode / "out" / "job") for mode in ("ddp", "fsdp")
    }


def test_fsdp_trains_like_ddp_with_half_the_frozen_bytes(runs, world):
    (ddp, ddp_dir), (fsdp, fsdp_dir) = runs["ddp"], runs["fsdp"]
    assert fsdp["ranks_in_sync"] and fsdp["global_step"] == 8
    got, want = h.train_losses(fsdp_dir), h.train_losses(ddp_dir)
    assert [s for s, _ in got] == [s for s, _ in want] == list(range(1, 9))
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in want], abs=TOLERANCE)
    h.assert_same_weights(
        h.trainable(fsdp_dir / "checkpoint_1.pth"), h.trainable(ddp_dir / "checkpoint_1.pth"), TOLERANCE
    )
    full = ddp["rank_frozen_param_bytes"]
    assert full[0] == full[1] > 0
    for sharded in fsdp["rank_frozen_param_bytes"]:
        assert 0.45 <= sharded / full[0] <= 0.6, (sharded, full)
    for summary in (ddp, fsdp):  # every rank's peak resident memory, for the bench and the user
        assert len(summary["rank_peak_rss_mib"]) == 2 and all(m > 50 for m in summary["rank_peak_rss_mib"])


def test_fsdp_checkpoint_is_the_published_format_and_loads_as_model_ckpt(runs, world):
    from minigpt4.models import MiniGPT4

    _, fsdp_dir = runs["fsdp"]
    weights = h.trainable(fsdp_dir / "checkpoint_1.pth")
    assert all(type(t) is torch.Tensor for t in weights.values())  # full tensors, not shards
    assert {k for k in weights if not k.endswith("position_ids")} == {"llama_proj.weight", "llama_proj.bias"}
    model = MiniGPT4.from_config(h.model_section(world, ckpt=str(fsdp_dir / "checkpoint_1.pth")))
    assert torch.equal(model.llama_proj.weight.detach(), weights["llama_proj.weight"])


def test_fsdp_resumes_exactly_after_a_preemption(runs, world, tmp_path):
    cfg = _config(world, tmp_path, "fsdp")
    run_dir = tmp_path / "out" / "job"
    proc = subprocess.Popen(
        [*TORCHRUN, "--cfg-path", str(cfg)], cwd=h.REPO_ROOT, env=h.subprocess_env(), stderr=subprocess.PIPE
    )
    try:
        deadline = time.time() + 240
        while (
            not (run_dir / "metrics.jsonl").exists() or '"kind": "train"' not in (run_dir / "metrics.jsonl").read_text()
        ):
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.time() < deadline, "the training made no progress"
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)  # the launcher forwards it to both workers
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert f"exitcode  : {PREEMPTED_EXIT_CODE}" in err.decode() or "preempted" in (run_dir / "log.txt").read_text()
    assert list(run_dir.glob("checkpoint_*.pth")), err.decode()[-3000:]
    _torchrun(cfg)
    _, ref_dir = runs["fsdp"]
    h.assert_same_weights(h.trainable(run_dir / "checkpoint_1.pth"), h.trainable(ref_dir / "checkpoint_1.pth"))
    got, want = h.train_losses(run_dir), h.train_losses(ref_dir)
    assert [s for s, _ in got] == [s for s, _ in want]
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in want], abs=1e-6)


@pytest.mark.parametrize(
    ("run", "model", "message"),
    [
        ({"parallelism": "zero3"}, {}, "run.parallelism: expected one of ddp, fsdp, got 'zero3'"),
        ({"parallelism": "fsdp", "valid_splits": ["val"]}, {}, "run.parallelism=fsdp does not validate yet"),
        (
            {"parallelism": "fsdp", "valid_generation": "caption.yaml"},
            {},
            r"does not validate yet \(.*valid_generation",
        ),
        ({"parallelism": "fsdp"}, {"low_resource": True}, "cannot shard an 8-bit"),
    ],
)
def test_unsupported_fsdp_settings_fail_naming_the_key(tmp_path, run, model, message):
    from tests.runners.toy import ToyConfig, make_runner

    with pytest.raises(ValueError, match=message):
        make_runner(tmp_path, **run) if not model else _runner_with_model_cfg(tmp_path, ToyConfig, model, run)


def _runner_with_model_cfg(tmp_path, toy_config, model_cfg, run):
    from minigpt4.runners.fsdp import check_parallelism

    cfg = toy_config(tmp_path, **run)
    check_parallelism(cfg.run_cfg, {**cfg.model_cfg, **model_cfg})
