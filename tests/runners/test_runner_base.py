"""The runner on a toy model: optimisation, precision, non-finite losses, accumulation, checkpoints, resume."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import torch

from minigpt4.runners import checkpointer as ckpt_io
from minigpt4.runners.metrics import MetricsLog
from minigpt4.runners.precision import resolve_precision
from minigpt4.runners.runner_base import NonFiniteLossError, job_id_from_config, training_device
from tests.runners.toy import ToyConfig, ToyModel, make_runner


def _weights(run_dir: Path, name: str) -> dict[str, torch.Tensor]:
    return ckpt_io.load_checkpoint_file(run_dir / name)["model"]


def _assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 1e-6) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert torch.allclose(a[key], b[key], atol=atol, rtol=0), key


def _train_losses(run_dir: Path) -> list[tuple[int, float]]:
    records = MetricsLog(run_dir / "metrics.jsonl").read()
    return [(r["step"], r["loss"]) for r in records if r["kind"] == "train"]


def _fail_at(runner, call: int, make) -> None:
    """Make the task's train_step misbehave at its ``call``-th call (1-based)."""
    original = runner.task.train_step
    calls = {"n": 0}

    def step(model, samples):
        calls["n"] += 1
        loss = original(model, samples)
        return make(loss) if calls["n"] == call else loss

    runner.task.train_step = step


def _interrupt(loss):
    raise KeyboardInterrupt


def test_weight_decay_only_on_matrices(tmp_path):
    runner = make_runner(tmp_path)
    groups = {g["weight_decay"]: g["params"] for g in runner.optimizer.param_groups}
    names = {id(p): n for n, p in runner.model.named_parameters()}
    assert sorted(names[id(p)] for p in groups[0.05]) == ["llama_proj.weight"]
    assert sorted(names[id(p)] for p in groups[0.0]) == ["llama_proj.bias", "norm.bias", "norm.weight"]
    assert runner.optimizer.defaults["betas"] == (0.9, 0.999)


def test_trains_writes_checkpoints_config_and_metrics(tmp_path):
    runner = make_runner(tmp_path, max_epoch=3, valid_splits=["val"], tensorboard=True)
    summary = runner.train()
    run_dir = tmp_path / "toy"
    assert summary["global_step"] == 12 and summary["ranks_in_sync"]
    for name in ("checkpoint_0.pth", "checkpoint_1.pth", "checkpoint_2.pth", "checkpoint_best.pth", "config.yaml"):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "tensorboard").iterdir())
    ckpt = ckpt_io.load_checkpoint_file(run_dir / "checkpoint_2.pth")
    assert {"model", "optimizer", "scaler", "config", "epoch", "global_step", "scheduler", "rng", "data"} <= set(ckpt)
    assert sorted(ckpt["model"]) == ["llama_proj.bias", "llama_proj.weight", "norm.bias", "norm.weight"]
    assert ckpt["epoch"] == 2 and ckpt["global_step"] == 12 and len(ckpt["rng"]) == 1
    assert ckpt["config"]["run"]["max_epoch"] == 3
    vals = [r["loss"] for r in MetricsLog(run_dir / "metrics.jsonl").read() if r["kind"] == "val"]
    assert len(vals) == 3 and vals[-1] < vals[0]
    summary_file = json.loads((run_dir / "summary.json").read_text())
    assert summary_file["best_val_loss"] == pytest.approx(min(vals))


@pytest.mark.parametrize("stop_at", [1, 4, 6, 8])
def test_resume_after_interruption_equals_uninterrupted(tmp_path, stop_at):
    reference = make_runner(tmp_path / "ref", save_freq=1)
    reference.train()
    ref_dir = tmp_path / "ref" / "toy"

    interrupted = make_runner(tmp_path / "run", save_freq=1, auto_resume=True)
    _fail_at(interrupted, stop_at, _interrupt)
    with pytest.raises(KeyboardInterrupt):
        interrupted.train()
    resumed = make_runner(tmp_path / "run", save_freq=1, auto_resume=True)
    summary = resumed.train()
    run_dir = tmp_path / "run" / "toy"
    assert summary["steps_this_run"] == 8 - (stop_at - 1)
    _assert_close(_weights(run_dir, "checkpoint_1.pth"), _weights(ref_dir, "checkpoint_1.pth"))
    got, want = _train_losses(run_dir), _train_losses(ref_dir)
    assert [step for step, _ in got] == [step for step, _ in want] == list(range(1, 9))
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in want], abs=1e-6)


def test_resume_from_explicit_checkpoint_into_a_new_folder(tmp_path):
    make_runner(tmp_path / "ref").train()
    ref_dir = tmp_path / "ref" / "toy"
    first = make_runner(tmp_path / "a", max_epoch=1)
    first.train()
    second = make_runner(tmp_path / "b", resume_ckpt_path=str(tmp_path / "a" / "toy" / "checkpoint_0.pth"), max_epoch=2)
    assert second.train()["steps_this_run"] == 4
    _assert_close(_weights(tmp_path / "b" / "toy", "checkpoint_1.pth"), _weights(ref_dir, "checkpoint_1.pth"))


def test_accumulation_matches_a_larger_batch(tmp_path):
    big = make_runner(tmp_path / "big", lr_sched=None, batch_size_train=4, iters_per_epoch=2, max_epoch=1)
    small = make_runner(
        tmp_path / "small", lr_sched=None, batch_size_train=2, accum_grad_iters=2, iters_per_epoch=4, max_epoch=1
    )
    for runner in (big, small):
        runner.model.dropout.p = 0.0
        runner.train()
    _assert_close(
        _weights(tmp_path / "big" / "toy", "checkpoint_0.pth"), _weights(tmp_path / "small" / "toy", "checkpoint_0.pth")
    )


def test_nonfinite_loss_is_skipped_and_counted(tmp_path, caplog):
    runner = make_runner(tmp_path, max_epoch=1)
    _fail_at(runner, 3, lambda loss: loss * float("nan"))
    with caplog.at_level(logging.WARNING):
        summary = runner.train()
    assert summary["nonfinite_skipped"] == 1
    assert "non-finite loss" in caplog.text
    ckpt = ckpt_io.load_checkpoint_file(tmp_path / "toy" / "checkpoint_0.pth")
    assert ckpt["nonfinite_total"] == 1
    steps = {int(s["step"]) for s in ckpt["optimizer"]["state"].values()}
    assert steps == {3}  # 4 iterations, one skipped: three optimizer updates
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    records = [r for r in MetricsLog(tmp_path / "toy" / "metrics.jsonl").read() if r["kind"] == "train"]
    assert [r["nonfinite_skipped"] for r in records] == [0, 0, 1, 1]


def test_too_many_nonfinite_losses_stop_with_advice(tmp_path):
    runner = make_runner(tmp_path, max_consecutive_nonfinite=3)
    original = runner.task.train_step
    runner.task.train_step = lambda model, samples: original(model, samples) * float("inf")
    with pytest.raises(NonFiniteLossError) as err:
        runner.train()
    message = str(err.value)
    assert "3 non-finite losses in a row" in message
    for hint in ("run.init_lr", "bfloat16", "check the data"):
        assert hint in message


def test_precision_choices(tmp_path):
    cfg = ToyConfig(tmp_path, amp=True).run_cfg
    for device in ("cpu", "cuda"):  # the published fp16 autocast with a scaler, on the CPU as on CUDA
        fp16 = resolve_precision(cfg, torch.device(device))
        assert fp16.dtype == torch.float16 and fp16.use_scaler, device
    bf16 = resolve_precision(ToyConfig(tmp_path, amp=True, amp_dtype="bfloat16").run_cfg, torch.device("cpu"))
    assert bf16.dtype == torch.bfloat16 and not bf16.use_scaler
    assert resolve_precision(ToyConfig(tmp_path).run_cfg, torch.device("cpu")).dtype is None
    with pytest.raises(ValueError, match="run.amp_dtype"):
        resolve_precision(ToyConfig(tmp_path, amp=True, amp_dtype="fp8").run_cfg, torch.device("cpu"))


def _record_autocast(runner) -> list:
    seen = []
    original = runner.task.train_step

    def step(model, samples):
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return original(model, samples)

    runner.task.train_step = step
    return seen


def _overflow_at(runner, step: int) -> None:
    """Scale the loss of global step ``step`` so far up that its fp16-scaled gradients overflow (the loss itself
    stays finite, so only the scaler can notice)."""
    original = runner.task.train_step

    def train_step(model, samples):
        loss = original(model, samples)
        return loss * 1e36 if runner.global_step + 1 == step else loss

    runner.task.train_step = train_step


def test_fp16_autocast_with_a_scaler_trains_on_cpu(tmp_path):
    runner = make_runner(tmp_path, amp=True, amp_dtype="float16", max_epoch=4, valid_splits=["train"])
    seen = _record_autocast(runner)
    summary = runner.train()
    assert isinstance(runner.scaler, torch.amp.GradScaler) and runner.scaler._device == "cpu"
    assert seen == [torch.float16] * 16 and summary["nonfinite_skipped"] == 0
    assert all(math.isfinite(loss) for _, loss in _train_losses(tmp_path / "toy"))
    # the loss over the whole training set (evaluated under the same fp16 autocast) falls epoch after epoch
    records = MetricsLog(tmp_path / "toy" / "metrics.jsonl").read()
    full = [r["loss"] for r in records if r["kind"] == "val"]
    assert len(full) == 4 and all(b < a for a, b in zip(full, full[1:])), full
    ckpt = ckpt_io.load_checkpoint_file(tmp_path / "toy" / "checkpoint_3.pth")
    assert ckpt["scaler"]["scale"] == 65536.0 and ckpt["scaler"]["_growth_tracker"] == 16  # no overflow: 16 steps


def test_fp16_overflow_skips_the_step_and_lowers_the_scale(tmp_path, caplog):
    runner = make_runner(tmp_path, amp=True, max_epoch=1, save_freq=1, max_grad_norm=1.0)
    _overflow_at(runner, 3)
    with caplog.at_level(logging.INFO, logger="minigpt4.runners.runner_base"):
        summary = runner.train()
    run_dir = tmp_path / "toy"
    before, after = (ckpt_io.load_checkpoint_file(run_dir / f"checkpoint_step{s}.pth") for s in (2, 3))
    _assert_close(after["model"], before["model"], atol=0.0)  # step 3 changed no weight
    assert {int(s["step"]) for s in after["optimizer"]["state"].values()} == {2}  # nor the optimizer
    assert before["scaler"]["scale"] == 65536.0 and after["scaler"]["scale"] == 32768.0
    assert after["scaler"]["_growth_tracker"] == 0
    final = ckpt_io.load_checkpoint_file(run_dir / "checkpoint_0.pth")
    assert {int(s["step"]) for s in final["optimizer"]["state"].values()} == {3}  # 4 iterations, one skipped
    assert summary["nonfinite_skipped"] == 0  # the loss was finite: this is the scaler's skip, not the guard's
    assert "step 3: fp16 gradients overflowed; update skipped, loss scale 65536 -> 32768" in caplog.text


@pytest.mark.parametrize("stop_at", [3, 6])
def test_fp16_resume_restores_the_scaler_exactly(tmp_path, stop_at):
    opts = dict(amp=True, save_freq=1, auto_resume=True)
    reference = make_runner(tmp_path / "ref", **opts)
    _overflow_at(reference, 2)
    reference.train()
    interrupted = make_runner(tmp_path / "run", **opts)
    _overflow_at(interrupted, 2)
    _fail_at(interrupted, stop_at, _interrupt)
    with pytest.raises(KeyboardInterrupt):
        interrupted.train()
    resumed = make_runner(tmp_path / "run", **opts)
    _overflow_at(resumed, 2)
    resumed.train()
    got = ckpt_io.load_checkpoint_file(tmp_path / "run" / "toy" / "checkpoint_1.pth")
    want = ckpt_io.load_checkpoint_file(tmp_path / "ref" / "toy" / "checkpoint_1.pth")
    assert want["scaler"] == {**want["scaler"], "scale": 32768.0, "_growth_tracker": 6}  # lowered at step 2
    assert got["scaler"] == want["scaler"]
    _assert_close(got["model"], want["model"])
    got_losses, want_losses = _train_losses(tmp_path / "run" / "toy"), _train_losses(tmp_path / "ref" / "toy")
    assert [s for s, _ in got_losses] == [s for s, _ in want_losses] == list(range(1, 9))
    assert [loss for _, loss in got_losses] == pytest.approx([loss for _, loss in want_losses], abs=1e-6)


def test_bf16_autocast_trains_on_cpu(tmp_path):
    runner = make_runner(tmp_path, amp=True, amp_dtype="bfloat16", max_epoch=1)
    seen = []
    original = runner.task.train_step

    def step(model, samples):
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return original(model, samples)

    runner.task.train_step = step
    summary = runner.train()
    assert seen == [torch.bfloat16] * 4 and summary["nonfinite_skipped"] == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_requested_without_cuda_fails_clearly(tmp_path):
    with pytest.raises(RuntimeError, match="run.device=cpu"):
        training_device(ToyConfig(tmp_path, device="cuda").run_cfg)


def test_fresh_run_refuses_a_folder_with_checkpoints(tmp_path):
    make_runner(tmp_path, max_epoch=1).train()
    with pytest.raises(FileExistsError, match="auto_resume"):
        make_runner(tmp_path, max_epoch=1).train()


def test_auto_resume_needs_a_job_name(tmp_path):
    with pytest.raises(ValueError, match="job_name"):
        job_id_from_config(ToyConfig(tmp_path, auto_resume=True, job_name=None).run_cfg)
    assert job_id_from_config(ToyConfig(tmp_path, job_name="x").run_cfg) == "x"
    assert job_id_from_config(ToyConfig(tmp_path, job_name=None).run_cfg).isdigit()


def test_keep_last_prunes_step_checkpoints_but_keeps_best(tmp_path):
    make_runner(tmp_path, save_freq=1, keep_last=2, valid_splits=["val"]).train()
    names = sorted(p.name for p in (tmp_path / "toy").glob("checkpoint_*.pth"))
    assert names == ["checkpoint_1.pth", "checkpoint_best.pth", "checkpoint_step7.pth"]


def test_schedule_must_align_with_accumulation(tmp_path):
    with pytest.raises(ValueError, match="positive multiple of run.accum_grad_iters"):
        make_runner(tmp_path, iters_per_epoch=5, accum_grad_iters=2)
    with pytest.raises(ValueError, match="save_freq"):
        make_runner(tmp_path, save_freq=3, accum_grad_iters=2)


def test_iters_per_epoch_defaults_to_one_pass(tmp_path):
    runner = make_runner(tmp_path, iters_per_epoch=None, batch_size_train=4)
    assert runner.iters_per_epoch == 8  # 32 samples / batch 4


def test_model_without_trainable_parameters_is_refused(tmp_path):
    model = ToyModel()
    for param in model.parameters():
        param.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        make_runner(tmp_path, model=model)


def test_evaluate_only_reports_the_validation_loss(tmp_path):
    make_runner(tmp_path / "a", max_epoch=1).train()
    ckpt = tmp_path / "a" / "toy" / "checkpoint_0.pth"
    runner = make_runner(tmp_path / "b", evaluate=True, valid_splits=["val"], resume_ckpt_path=str(ckpt))
    result = runner.train()["evaluation"]
    assert set(result) == {"toy/val", "loss"} and result["loss"] > 0
    assert not list((tmp_path / "b" / "toy").glob("checkpoint_*.pth"))


def test_resume_needs_every_trainable_parameter(tmp_path):
    make_runner(tmp_path / "a", max_epoch=1).train()
    ckpt_path = tmp_path / "a" / "toy" / "checkpoint_0.pth"
    ckpt = ckpt_io.load_checkpoint_file(ckpt_path)
    del ckpt["model"]["norm.weight"]
    torch.save(ckpt, ckpt_path)
    with pytest.raises(KeyError, match="norm.weight"):
        make_runner(tmp_path / "b", resume_ckpt_path=str(ckpt_path)).train()


class _CompilableToy(ToyModel):
    def compile_networks(self) -> list[str]:
        self.llama_proj.compile(backend="eager")  # the wiring; the model's own method picks inductor
        return ["llama_proj"]


def test_compile_switch_compiles_the_model_networks_and_trains(tmp_path):
    with pytest.raises(ValueError, match="compile_networks"):
        make_runner(tmp_path / "plain", compile=True)
    runner = make_runner(tmp_path / "compiled", model=_CompilableToy(), compile=True, max_epoch=1)
    assert runner.model.llama_proj._compiled_call_impl is not None
    runner.train()
    eager = make_runner(tmp_path / "eager", model=_CompilableToy(), max_epoch=1)  # seeds the RNGs again
    assert eager.model.llama_proj._compiled_call_impl is None
    eager.train()
    compiled_weights = _weights(tmp_path / "compiled" / "toy", "checkpoint_0.pth")
    _assert_close(compiled_weights, _weights(tmp_path / "eager" / "toy", "checkpoint_0.pth"))


def test_best_checkpoint_by_configured_metric_and_mode(tmp_path):
    for mode, pick in (("max", max), ("min", min)):
        runner = make_runner(tmp_path / mode, max_epoch=3, valid_splits=["val"], best_metric="toy/val", best_mode=mode)
        summary = runner.train()
        records = [r for r in MetricsLog(tmp_path / mode / "toy" / "metrics.jsonl").read() if r["kind"] == "val"]
        chosen = pick(records, key=lambda r: r["toy/val"])
        best = ckpt_io.load_checkpoint_file(tmp_path / mode / "toy" / "checkpoint_best.pth")
        assert best["epoch"] == chosen["epoch"] and summary["best_value"] == chosen["toy/val"], mode
        assert best["checkpointer"] == {"best_metric": "toy/val", "best_mode": mode, "best_value": chosen["toy/val"]}
    # the two modes pick different epochs here, so the mode is really what chose
    maximum = ckpt_io.load_checkpoint_file(tmp_path / "max" / "toy" / "checkpoint_best.pth")["epoch"]
    assert maximum != ckpt_io.load_checkpoint_file(tmp_path / "min" / "toy" / "checkpoint_best.pth")["epoch"]


def test_unknown_best_metric_names_the_key_and_the_metrics(tmp_path):
    with pytest.raises(ValueError, match=r"run.best_metric='accuracy'.*'loss'.*'toy/val'"):
        make_runner(tmp_path, max_epoch=1, valid_splits=["val"], best_metric="accuracy")
    # a metric of the task under a dataset's name passes this check; a validation that lacks it says so
    runner = make_runner(tmp_path, max_epoch=1, valid_splits=["val"], best_metric="toy/val/accuracy")
    with pytest.raises(KeyError, match=r"run.best_metric='toy/val/accuracy'.*\['loss', 'toy/val'\]"):
        runner.train()


def test_resume_keeps_the_best_so_far(tmp_path):
    # "max" picks epoch 0; a resumed run that forgot the best value would overwrite it with epoch 1
    opts = dict(save_freq=1, valid_splits=["val"], best_mode="max")
    make_runner(tmp_path / "ref", **opts).train()
    interrupted = make_runner(tmp_path / "run", auto_resume=True, **opts)
    _fail_at(interrupted, 6, _interrupt)
    with pytest.raises(KeyboardInterrupt):
        interrupted.train()
    make_runner(tmp_path / "run", auto_resume=True, **opts).train()
    got = ckpt_io.load_checkpoint_file(tmp_path / "run" / "toy" / "checkpoint_best.pth")
    want = ckpt_io.load_checkpoint_file(tmp_path / "ref" / "toy" / "checkpoint_best.pth")
    assert got["epoch"] == want["epoch"] == 0 and got["checkpointer"] == want["checkpointer"]
    _assert_close(got["model"], want["model"])


def test_the_data_pass_count_is_not_logged_as_an_epoch(tmp_path, caplog):
    # 32 samples in batches of 8: every 4 iterations the dataset starts a new pass
    runner = make_runner(tmp_path, batch_size_train=8, max_epoch=2)
    with caplog.at_level(logging.DEBUG, logger="minigpt4.datasets.data_utils"):
        runner.train()
    passes = [r for r in caplog.records if r.name == "minigpt4.datasets.data_utils" and "done after" in r.getMessage()]
    assert passes and all(r.levelno == logging.DEBUG for r in passes)
    assert (
        "data pass 0 done after 4 batches (the dataset's own pass count, not the run's epoch)" in passes[0].getMessage()
    )
