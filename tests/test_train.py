"""train.py end to end on a tiny MiniGPT-4 and tiny data made here: single process, stage 1 -> stage 2,
a resume after ``kill -9`` at a random moment (fp32 and the published fp16 + scaler path), a 2-process torchrun
job, accumulation, validation loss for any eval batch size and number of ranks, precision choice, bad configs."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

import train
from minigpt4.runners.runner_base import param_digest
from tests.runners import helpers as h


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return h.build_world(tmp_path_factory.mktemp("train_world"))


def _reference_config(world, path, output_dir, **run_overrides):
    run = h.run_section(output_dir, save_freq=1, auto_resume=True, valid_splits=["train"], init_lr=3e-2)
    run.update(run_overrides)
    return h.write_config(path, h.model_section(world), h.align_datasets(world), run)


@pytest.fixture(scope="module")
def reference(world, tmp_path_factory):
    """An uninterrupted run: 2 epochs x 4 iterations, a checkpoint every iteration, validation per epoch."""
    root = tmp_path_factory.mktemp("reference")
    cfg = _reference_config(world, root / "train.yaml", root / "out")
    summary = train.main(["--cfg-path", str(cfg)])
    return {"cfg": cfg, "run_dir": root / "out" / "job", "summary": summary}


def test_single_process_run_trains_and_writes_its_folder(reference):
    run_dir, summary = reference["run_dir"], reference["summary"]
    assert summary["global_step"] == 8 and summary["ranks_in_sync"]
    assert summary["last_checkpoint"] == str(run_dir / "checkpoint_1.pth")
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "log.txt", "checkpoint_0.pth", "checkpoint_best.pth"):
        assert (run_dir / name).is_file(), name
    ckpt = torch.load(run_dir / "checkpoint_1.pth", map_location="cpu", weights_only=False)
    # trainable parameters only (plus the persistent buffers the published format keeps)
    assert sorted(k for k in ckpt["model"] if not k.endswith("position_ids")) == [
        "llama_proj.bias",
        "llama_proj.weight",
    ]
    assert ckpt["config"]["run"]["max_epoch"] == 2 and ckpt["epoch"] == 1 and ckpt["global_step"] == 8
    vals = [r["loss"] for r in h.read_metrics(run_dir) if r["kind"] == "val"]
    assert len(vals) == 2 and vals[1] < vals[0]
    assert [step for step, _ in h.train_losses(run_dir)] == list(range(1, 9))


def _kill_9_after_a_checkpoint(cfg, run_dir) -> tuple[str, int]:
    """Start train.py on ``cfg`` and kill it at a random moment after a random step checkpoint (possibly mid-save).

    Returns a note (seed, when it was killed) for assertion messages, and the step it waited for."""
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    kill_after_step, extra_delay = rng.randint(1, 4), rng.uniform(0.0, 0.2)
    proc = subprocess.Popen(h.train_command(cfg), cwd=h.REPO_ROOT, env=h.subprocess_env(), stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not (run_dir / f"checkpoint_step{kill_after_step}.pth").exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.time() < deadline, "the training process made no progress"
            time.sleep(0.02)
        time.sleep(extra_delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    note = f"(seed {seed}: killed {extra_delay:.3f}s after checkpoint_step{kill_after_step}.pth appeared)"
    assert proc.returncode == -signal.SIGKILL, f"the process was not killed mid-run {note}"
    return note, kill_after_step


def test_resume_after_kill_9_equals_uninterrupted(world, reference, tmp_path):
    """Kill a real training process at a random moment (possibly mid-save), resume, compare with the reference."""
    cfg = _reference_config(world, tmp_path / "train.yaml", tmp_path / "out")
    run_dir = tmp_path / "out" / "job"
    note, kill_after_step = _kill_9_after_a_checkpoint(cfg, run_dir)

    summary = train.main(["--cfg-path", str(cfg)])  # auto_resume: True in the config
    assert 0 < summary["steps_this_run"] <= 8 - kill_after_step, note
    h.assert_same_weights(
        h.trainable(run_dir / "checkpoint_1.pth"), h.trainable(reference["run_dir"] / "checkpoint_1.pth")
    )
    got, want = h.train_losses(run_dir), h.train_losses(reference["run_dir"])
    assert [s for s, _ in got] == [s for s, _ in want], note
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in want], abs=1e-6), note
    assert not list(run_dir.glob(".checkpoint_*.tmp")), note


FP16 = {"amp": True, "amp_dtype": "float16"}  # the published mixed precision: fp16 autocast and a GradScaler


def test_fp16_with_a_scaler_resumes_after_kill_9_exactly(world, tmp_path):
    """The published ``run.amp: True`` path on the CPU: fp16 autocast, GradScaler("cpu"), kill -9 and resume."""
    ref_cfg = _reference_config(world, tmp_path / "ref.yaml", tmp_path / "ref", **FP16)
    reference = train.main(["--cfg-path", str(ref_cfg)])
    ref_dir = tmp_path / "ref" / "job"
    assert "precision: float16 (run.amp_dtype=float16)" in (ref_dir / "log.txt").read_text()
    want = h.train_losses(ref_dir)
    assert all(math.isfinite(loss) for _, loss in want) and reference["nonfinite_skipped"] == 0
    vals = [r["loss"] for r in h.read_metrics(ref_dir) if r["kind"] == "val"]
    assert vals[1] < vals[0]  # learning under fp16

    cfg = _reference_config(world, tmp_path / "train.yaml", tmp_path / "out", **FP16)
    run_dir = tmp_path / "out" / "job"
    note, _ = _kill_9_after_a_checkpoint(cfg, run_dir)
    train.main(["--cfg-path", str(cfg)])
    got_ckpt, want_ckpt = (torch.load(d / "checkpoint_1.pth", weights_only=False) for d in (run_dir, ref_dir))
    assert want_ckpt["scaler"]["_growth_tracker"] > 0, "the scaler state should have moved"
    assert got_ckpt["scaler"] == want_ckpt["scaler"], note
    h.assert_same_weights(got_ckpt["model"], want_ckpt["model"])
    got = h.train_losses(run_dir)
    assert [s for s, _ in got] == [s for s, _ in want], note
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in want], abs=1e-6), note


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(h.TRAIN_PY)]


def _ddp_config(world, path, output_dir):
    # accumulation exercises DDP's no_sync; validation the sharded evaluation and its all-reduce
    run = h.run_section(
        output_dir,
        max_epoch=3,
        iters_per_epoch=4,
        accum_grad_iters=2,
        save_freq=2,
        init_lr=3e-2,
        valid_splits=["train"],
        auto_resume=True,
    )
    return h.write_config(path, h.model_section(world), h.align_datasets(world), run)


def _torchrun(cfg):
    result = subprocess.run(
        [*TORCHRUN, "--cfg-path", str(cfg)],
        cwd=h.REPO_ROOT,
        env=h.subprocess_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.fixture(scope="module")
def ddp_reference(world, tmp_path_factory):
    """An uninterrupted 2-process run (gloo): 3 epochs x 4 iterations."""
    root = tmp_path_factory.mktemp("ddp_reference")
    _torchrun(_ddp_config(world, root / "ddp.yaml", root / "out"))
    return root / "out" / "job"


def test_torchrun_two_processes_hold_identical_weights(ddp_reference):
    run_dir = ddp_reference
    summary = json.loads((run_dir / "summary.json").read_text())
    digests = summary["rank_param_digests"]
    assert len(digests) == 2 and summary["ranks_in_sync"]
    ckpt = torch.load(run_dir / "checkpoint_2.pth", map_location="cpu", weights_only=False)
    assert param_digest(ckpt["model"]) == digests[0] == digests[1]
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2 and set(ckpt["data"]["ranks"]) == {0, 1}
    assert (run_dir / "log_rank1.txt").is_file() and (run_dir / "checkpoint_best.pth").is_file()
    assert [step for step, _ in h.train_losses(run_dir)] == list(range(1, 13))


def test_torchrun_resume_after_kill_9_equals_uninterrupted(world, ddp_reference, tmp_path):
    """Kill both ranks (and the launcher) as soon as the first mid-epoch checkpoint exists, resume, compare."""
    cfg = _ddp_config(world, tmp_path / "ddp.yaml", tmp_path / "out")
    run_dir = tmp_path / "out" / "job"
    proc = subprocess.Popen(
        [*TORCHRUN, "--cfg-path", str(cfg)], cwd=h.REPO_ROOT, env=h.subprocess_env(), stderr=subprocess.PIPE
    )
    try:
        deadline = time.time() + 180
        while not list(run_dir.glob("checkpoint_step*.pth")):
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.time() < deadline, "the training processes made no progress"
            time.sleep(0.005)
        # the launcher starts its workers in their own sessions: kill them by pid
        workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        for pid in workers:
            os.kill(int(pid), signal.SIGKILL)
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert len(workers) == 2
    _torchrun(cfg)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert 0 < summary["steps_this_run"] < 12 and summary["ranks_in_sync"]
    h.assert_same_weights(h.trainable(run_dir / "checkpoint_2.pth"), h.trainable(ddp_reference / "checkpoint_2.pth"))
    got, want = h.train_losses(run_dir), h.train_losses(ddp_reference)
    assert [s for s, _ in got] == [s for s, _ in want]
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in want], abs=1e-6)


def _eval_config(world, folder, tmp_path, name, **run):
    run = h.run_section(tmp_path / "out", job_name=name, evaluate=True, valid_splits=["train"], **run)
    datasets = {"cc_sbu_align": {**h.align_datasets(world)["cc_sbu_align"], "build_info": {"storage": str(folder)}}}
    return h.write_config(tmp_path / f"{name}.yaml", h.model_section(world), datasets, run)


def test_validation_loss_is_the_same_for_any_eval_batch_size_and_number_of_ranks(world, tmp_path):
    """7 answers of different lengths: the token-weighted loss over the split, however it is batched and sharded."""
    from tests.datasets.shard_utils import write_align_folder

    captions = {str(i): h.CAPTIONS[i % len(h.CAPTIONS)] * (1 + i % 3) for i in range(7)}
    folder = write_align_folder(tmp_path / "align7", captions)
    results = {}
    for batch in (1, 4):
        summary = train.main(
            ["--cfg-path", str(_eval_config(world, folder, tmp_path, f"bs{batch}", batch_size_eval=batch))]
        )
        results[f"1 process, batch {batch}"] = summary["evaluation"]["loss"]
        assert summary["counts"]["cc_sbu_align/train"]["num_samples"] == 7
    _torchrun(_eval_config(world, folder, tmp_path, "ddp", batch_size_eval=3))
    [record] = [r for r in h.read_metrics(tmp_path / "out" / "ddp") if r["kind"] == "eval"]
    results["2 processes, batch 3"] = record["loss"]
    first = results["1 process, batch 1"]
    assert all(value == pytest.approx(first, abs=1e-5) for value in results.values()), results
    log = (tmp_path / "out" / "ddp" / "log.txt").read_text()
    assert "= mean over all tokens of cc_sbu_align/train" in log


def _write_cpuinfo(path, flags):
    path.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 {' '.join(flags)}\n\n")
    return str(path)


@pytest.mark.parametrize(
    "flags, chosen",
    [(["avx2", "avx512f"], "float32"), (["avx2", "avx512_bf16"], "bfloat16"), (["amx_bf16", "amx_tile"], "bfloat16")],
    ids=["no-native-bf16", "avx512-bf16", "amx-bf16"],
)
def test_amp_dtype_auto_picks_bf16_only_where_the_cpu_runs_it(world, tmp_path, monkeypatch, flags, chosen):
    from minigpt4.runners import precision

    monkeypatch.setattr(precision, "CPUINFO", _write_cpuinfo(tmp_path / "cpuinfo", flags))
    seen = []
    original = torch.autocast.__init__

    def spy(self, device_type, *args, **kwargs):
        seen.append(kwargs.get("dtype"))
        original(self, device_type, *args, **kwargs)

    monkeypatch.setattr(torch.autocast, "__init__", spy)
    run = h.run_section(tmp_path / "out", max_epoch=1, iters_per_epoch=2, amp=True, amp_dtype="auto")
    cfg = h.write_config(tmp_path / "auto.yaml", h.model_section(world), h.align_datasets(world), run)
    train.main(["--cfg-path", str(cfg)])
    log = (tmp_path / "out" / "job" / "log.txt").read_text()
    line = next(line for line in log.splitlines() if "runner_base: precision:" in line)
    assert f"precision: {chosen} (run.amp_dtype=auto: this CPU has" in line
    if chosen == "float32":
        assert "no avx512_bf16 or amx_bf16" in line and "slower than float32" in line
        assert torch.bfloat16 not in seen
    else:
        assert [flag for flag in flags if "bf16" in flag][0] in line
        assert torch.bfloat16 in seen


def test_stage2_starts_from_the_stage1_checkpoint(world, tmp_path):
    s1_run = h.run_section(tmp_path / "out", job_name="s1", max_epoch=1, iters_per_epoch=3)
    s1_cfg = h.write_config(tmp_path / "s1.yaml", h.model_section(world), h.stage1_datasets(world), s1_run)
    s1 = train.main(["--cfg-path", str(s1_cfg)])
    stage1_ckpt = tmp_path / "out" / "s1" / "checkpoint_0.pth"
    assert s1["last_checkpoint"] == str(stage1_ckpt)
    assert s1["bad_samples"].get("image_decode", 0) > 0  # the broken images of the laion shards, counted
    assert h.read_metrics(tmp_path / "out" / "s1")[-1]["bad_samples"] == s1["bad_samples"]

    model = h.model_section(
        world,
        ckpt=str(stage1_ckpt),
        prompt_path=world["assets"]["prompt_path"],
        prompt_template="###Human: {} ###Assistant: ",
        end_sym="###",
        max_txt_len=24,
    )
    # LR 0: stage 2 runs its steps (forward, backward, optimizer) but must end on exactly the stage-1 weights.
    # (It also runs under CPU bf16 autocast, which touches only the forward pass.)
    s2_run = h.run_section(tmp_path / "out", job_name="s2", max_epoch=1, iters_per_epoch=2, init_lr=0.0)
    s2_run.update(min_lr=0.0, warmup_lr=0.0, amp=True, amp_dtype="bfloat16")
    s2_cfg = h.write_config(tmp_path / "s2.yaml", model, h.align_datasets(world), s2_run)
    s2 = train.main(["--cfg-path", str(s2_cfg)])
    assert s2["global_step"] == 2
    stage2 = h.trainable(tmp_path / "out" / "s2" / "checkpoint_0.pth")
    h.assert_same_weights(stage2, h.trainable(stage1_ckpt), atol=0.0)
    assert all(torch.isfinite(torch.tensor(loss)) for _, loss in h.train_losses(tmp_path / "out" / "s2"))


def test_accumulating_two_batches_of_two_matches_one_batch_of_four(world, tmp_path):
    # One caption for every image: every sample has as many answer tokens, so the mean over tokens of a batch of
    # four equals the mean of the means of its halves.
    from tests.datasets.shard_utils import write_align_folder

    same = write_align_folder(tmp_path / "align_same", {str(i): h.CAPTIONS[0] for i in range(8)})
    datasets = {"cc_sbu_align": {**h.align_datasets(world)["cc_sbu_align"], "build_info": {"storage": str(same)}}}
    weights = []
    for name, batch, accum, iters in (("big", 4, 1, 2), ("small", 2, 2, 4)):
        run = h.run_section(
            tmp_path / name,
            lr_sched=None,
            max_epoch=1,
            batch_size_train=batch,
            accum_grad_iters=accum,
            iters_per_epoch=iters,
        )
        cfg = h.write_config(tmp_path / f"{name}.yaml", h.model_section(world), datasets, run)
        train.main(["--cfg-path", str(cfg)])
        weights.append(h.trainable(tmp_path / name / "job" / "checkpoint_0.pth"))
    h.assert_same_weights(weights[0], weights[1], atol=1e-5)


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"datasets": {"no_such_dataset": {}}}, ["datasets.no_such_dataset", "bad.yaml"]),
        ({"run": {"max_epoch": "four"}}, ["run.max_epoch", "bad.yaml"]),
        ({"model": {"model_type": "pretrain_vicuna0", "llama_model": "???"}}, ["model.llama_model", "bad.yaml"]),
        ({"datasets": {"cc_sbu_align": {"build_info": {"storage": "/no/such/folder"}}}}, ["/no/such/folder"]),
        ({"run": {"auto_resume": True, "job_name": None}}, ["run.job_name"]),
        ({"run": {"amp_dtype": "fp8"}}, ["run.amp_dtype", "fp8"]),
        ({"run": {"accum_grad_iters": 3}}, ["run.iters_per_epoch", "run.accum_grad_iters"]),
        ({"run": {"best_mode": "lowest"}}, ["run.best_mode", "lowest"]),
    ],
    ids=[
        "unknown-dataset",
        "wrong-type",
        "missing-path",
        "absent-data-folder",
        "auto-resume-without-job-name",
        "unknown-amp-dtype",
        "accumulation-not-dividing-the-epoch",
        "unknown-best-mode",
    ],
)
def test_bad_configs_fail_before_any_model_is_built(world, tmp_path, monkeypatch, change, expected):
    from minigpt4.models.mini_gpt4 import MiniGPT4

    built = []
    monkeypatch.setattr(MiniGPT4, "from_config", classmethod(lambda cls, cfg: built.append(cfg)))
    sections = {
        "model": h.model_section(world),
        "datasets": h.align_datasets(world),
        "run": h.run_section(tmp_path / "out"),
    }
    for key, value in change.items():
        if key == "datasets" and "no_such_dataset" in value:
            sections[key] = value
        else:
            sections[key] = _merge(sections[key], value)
    cfg = h.write_config(tmp_path / "bad.yaml", sections["model"], sections["datasets"], sections["run"])
    with pytest.raises(Exception) as err:
        train.main(["--cfg-path", str(cfg)])
    for text in expected:
        assert text in str(err.value)
    assert built == []


def _merge(base: dict, change: dict) -> dict:
    out = dict(base)
    for key, value in change.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def test_command_line_parsing():
    args = train.parse_args(["--cfg-path", "x.yaml", "--options", "run.seed=1", "run.max_epoch=2"])
    assert args.cfg_path == "x.yaml" and args.options == ["run.seed=1", "run.max_epoch=2"]
    assert train.parse_args(["--cfg-path", "x.yaml"]).options is None
    with pytest.raises(SystemExit):
        train.parse_args([])


# errors a user meets, through the real command line --------------------------------------------------------


def _run_train(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(h.TRAIN_PY), *args],
        cwd=h.REPO_ROOT,
        env={**h.subprocess_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_config_error_is_one_line_and_exit_code_2_unless_debug(world, tmp_path):
    cfg = h.write_config(tmp_path / "t.yaml", h.model_section(world), h.align_datasets(world), h.run_section(tmp_path))
    result = _run_train("--cfg-path", str(cfg), "--options", "run.batch_size_train=-3")
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr == "train.py: error: --options: run.batch_size_train: -3 is out of range (must be > 0)\n"
    for debug in (["--debug"], []):
        env = {} if debug else {"MINIGPT4_DEBUG": "1"}
        shown = _run_train("--cfg-path", str(cfg), "--options", "run.batch_size_train=-3", *debug, env=env)
        assert shown.returncode == 1 and "Traceback" in shown.stderr and "run.batch_size_train" in shown.stderr


def test_yaml_syntax_error_names_file_line_and_column_on_the_command_line(tmp_path):
    cfg = tmp_path / "broken.yaml"
    cfg.write_text("model:\n  arch: mini_gpt4\n  model_type: tiny: x\n")
    result = _run_train("--cfg-path", str(cfg))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"train.py: error: {cfg}:3:19: could not parse YAML at line 3, column 19: mapping values")


def test_invalid_filter_cap_json_is_one_message_naming_file_line_and_column(world, tmp_path):
    from tests.datasets.shard_utils import write_align_folder

    align = write_align_folder(tmp_path / "align", {"1": h.CAPTIONS[0]})
    (align / "filter_cap.json").write_text(
        '{"annotations": [\n  {"image_id": "1", "caption": "x"}\n  {"image_id": "2"}\n]}\n'
    )
    datasets = {"cc_sbu_align": {**h.align_datasets(world)["cc_sbu_align"], "build_info": {"storage": str(align)}}}
    cfg = h.write_config(tmp_path / "t.yaml", h.model_section(world), datasets, h.run_section(tmp_path))
    result = _run_train("--cfg-path", str(cfg))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"train.py: error: {align / 'filter_cap.json'}:3:3: not valid JSON at line 3, column 3" in result.stderr


def test_help_tells_about_resuming_the_run_folder_and_debug():
    result = _run_train("--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: train.py")
    for text in ("run.auto_resume", "run.job_name", "checkpoint_best.pth", "metrics.jsonl", "summary.json", "--debug"):
        assert text in result.stdout, text


@pytest.mark.parametrize(
    "change, key",
    [
        ({"run": {"batch_size_train": -3}}, "run.batch_size_train"),
        ({"run": {"batch_size_eval": 0}}, "run.batch_size_eval"),
        ({"run": {"init_lr": -1.0}}, "run.init_lr"),
        ({"run": {"weight_decay": -0.01}}, "run.weight_decay"),
        ({"run": {"max_epoch": 0}}, "run.max_epoch"),
        ({"run": {"warmup_steps": 9}}, "run.warmup_steps"),  # more than 2 epochs x 4 iterations
        ({"model": {"max_txt_len": 0}}, "model.max_txt_len"),
        ({"datasets": {"cc_sbu_align": {"sample_ratio": 0}}}, "datasets.cc_sbu_align.sample_ratio"),
    ],
)
def test_out_of_range_values_fail_before_anything_is_built(world, tmp_path, monkeypatch, change, key):
    from minigpt4.common.config import ConfigError
    from minigpt4.datasets.builders import CCSBUAlignBuilder
    from minigpt4.models.mini_gpt4 import MiniGPT4

    built = []
    monkeypatch.setattr(MiniGPT4, "from_config", classmethod(lambda cls, cfg: built.append(cfg)))
    monkeypatch.setattr(CCSBUAlignBuilder, "build_datasets", lambda self: built.append(self))
    sections = {"model": h.model_section(world), "datasets": h.align_datasets(world), "run": h.run_section(tmp_path)}
    for name, value in change.items():
        sections[name] = _merge(sections[name], value)
    cfg = h.write_config(tmp_path / "range.yaml", sections["model"], sections["datasets"], sections["run"])
    with pytest.raises(ConfigError) as err:
        train.main(["--cfg-path", str(cfg)])
    assert str(err.value).startswith(f"{cfg}: {key}: ") and built == []


def test_missing_paths_are_all_reported_before_anything_is_built(world, tmp_path, monkeypatch):
    from minigpt4.common.config import ConfigError
    from minigpt4.datasets.builders import CCSBUAlignBuilder
    from minigpt4.models.mini_gpt4 import MiniGPT4

    built = []
    monkeypatch.setattr(MiniGPT4, "from_config", classmethod(lambda cls, cfg: built.append(cfg)))
    monkeypatch.setattr(CCSBUAlignBuilder, "build_datasets", lambda self: built.append(self))
    monkeypatch.chdir(tmp_path)
    stage1 = "output/s1/checkpoint_3.pth"  # one's own stage-1 output: no published-file advice
    model = h.model_section(world, ckpt=stage1, prompt_path=str(tmp_path / "prompts.txt"))
    datasets = {"cc_sbu_align": {**h.align_datasets(world)["cc_sbu_align"], "build_info": {"storage": "no/align"}}}
    cfg = h.write_config(tmp_path / "paths.yaml", model, datasets, h.run_section(tmp_path))
    with pytest.raises(ConfigError) as err:
        train.main(["--cfg-path", str(cfg), "--options", f"model.vit_path={tmp_path}/eva_vit_g.pth"])
    lines = str(err.value).splitlines()
    assert built == [] and len(lines) == 4, lines
    by_key = {line.split(": ")[1]: line for line in lines}
    assert set(by_key) == {
        "model.vit_path",
        "model.prompt_path",
        "model.ckpt",
        "datasets.cc_sbu_align.build_info.storage",
    }
    assert by_key["model.vit_path"].startswith("--options: ")
    assert "download it from https://storage.googleapis.com" in by_key["model.vit_path"]  # a published name
    ckpt = by_key["model.ckpt"]
    assert ckpt.startswith(f"{cfg}: model.ckpt: file not found: {stage1!r}")
    assert ckpt.count(str(tmp_path / stage1)) == 1 and "minigpt4/output" not in ckpt
    assert "http" not in ckpt and "download" not in ckpt


def test_validation_split_reads_its_own_data(world, tmp_path):
    from tests.datasets.shard_utils import write_align_folder

    val = write_align_folder(tmp_path / "val", {"100": "a tiny held out image", "101": "another one"})
    section = h.align_datasets(world)["cc_sbu_align"]
    section["splits"] = ["train", "val"]
    section["build_info"] = {"storage": world["align"], "split_storage": {"val": str(val)}}
    for kind in ("vis_processor", "text_processor"):
        section[kind]["val"] = section[kind]["train"]
    run = h.run_section(tmp_path / "out", max_epoch=1, iters_per_epoch=2, valid_splits=["train", "val"])
    cfg = h.write_config(tmp_path / "val.yaml", h.model_section(world), {"cc_sbu_align": section}, run)
    train.main(["--cfg-path", str(cfg)])
    record = next(r for r in h.read_metrics(tmp_path / "out" / "job") if r["kind"] == "val")
    assert record["cc_sbu_align/val"] != record["cc_sbu_align/train"]
    # the val split alone, without its own storage, is refused
    del section["build_info"]["split_storage"]
    cfg = h.write_config(tmp_path / "noval.yaml", h.model_section(world), {"cc_sbu_align": section}, run)
    result = _run_train("--cfg-path", str(cfg))
    assert result.returncode == 2
    assert "datasets.cc_sbu_align: split 'val' has no storage" in result.stderr
