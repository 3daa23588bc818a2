"""``evaluate.py`` end to end on the tiny world's sets: one process vs two torchrun ranks (gloo), a run killed with
SIGKILL mid-way and resumed, and the captioning task through the official metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import evaluate
from minigpt4.evaluation.captioning import caption_scores

REPO = Path(__file__).resolve().parents[2]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def test_one_process_and_two_ranks_give_the_same_predictions_and_metrics(write_eval_config, tmp_path):
    cfg = write_eval_config("pope", tmp_path / "single", limit=10)
    single = evaluate.main(["--cfg-path", str(cfg)])
    run_dir = tmp_path / "single" / "job"
    records = _lines(run_dir / "predictions.jsonl")
    assert [(r["dataset"], r["id"]) for r in records][:2] == [("pope_random", "1"), ("pope_random", "2")]
    assert len(records) == 20 and len({(r["dataset"], r["id"]) for r in records}) == 20
    assert set(single) == {"pope_random/test", "pope_adversarial/test"}
    assert set(single["pope_random/test"]) >= {"accuracy", "precision", "recall", "f1", "yes_ratio"}
    assert evaluate.load_metrics(run_dir) == single
    assert "f1" in (run_dir / "log.txt").read_text()  # the table is in the log

    sharded = tmp_path / "sharded"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone"]
    cmd += [str(REPO / "evaluate.py"), "--cfg-path", str(cfg), "--options", f"run.output_dir={sharded}"]
    done = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (sharded / "job" / "predictions.jsonl").read_text() == (run_dir / "predictions.jsonl").read_text()
    assert evaluate.load_metrics(sharded / "job") == single
    assert sorted(p.name for p in (sharded / "job").glob("predictions*")) == ["predictions.jsonl"]


def test_killed_mid_way_then_resumed_gives_the_uninterrupted_predictions(write_eval_config, tmp_path):
    cfg = write_eval_config("vqa", tmp_path / "killed", limit=40)
    part = tmp_path / "killed" / "job" / "predictions.rank0.jsonl"
    cmd = [sys.executable, str(REPO / "evaluate.py"), "--cfg-path", str(cfg), "--options", "run.batch_size_eval=1"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while proc.poll() is None and (not part.is_file() or len(part.read_text().splitlines()) < 3):
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the evaluation finished before it could be killed"
    written = len(part.read_text().splitlines())
    assert 3 <= written < 40
    with open(part, "a") as f:
        f.write('{"dataset": "vqav2", "split": "test", "id": "1", "ans')  # a torn last line

    resumed = evaluate.main(["--cfg-path", str(cfg)])
    reference = evaluate.main(["--cfg-path", str(cfg), "--options", f"run.output_dir={tmp_path / 'whole'}"])
    got = (tmp_path / "killed" / "job" / "predictions.jsonl").read_text()
    assert got == (tmp_path / "whole" / "job" / "predictions.jsonl").read_text()
    records = [json.loads(line) for line in got.splitlines()]
    assert len(records) == 40 and len({r["id"] for r in records}) == 40
    assert resumed == reference
    assert set(resumed["vqav2/test"]) >= {"accuracy", "accuracy/colour", "accuracy/shape", "accuracy/position"}
    assert not part.exists()


def test_captioning_reports_the_coco_metrics_of_its_predictions(write_eval_config, eval_sets, tmp_path):
    cfg = write_eval_config("captioning", tmp_path, limit=4, prompt="Describe this image.")
    metrics = evaluate.main(["--cfg-path", str(cfg)])["coco_caption/test"]
    records = _lines(tmp_path / "job" / "predictions.jsonl")
    assert [r["question"] for r in records] == ["Describe this image."] * 4
    data = json.loads((eval_sets / "captions_test.json").read_text())
    refs = {str(a["image_id"]): [] for a in data["annotations"]}
    for a in data["annotations"]:
        refs[str(a["image_id"])].append(a["caption"])
    expected = caption_scores({r["id"]: r["answer"] for r in records}, refs)
    assert {k: metrics[k] for k in expected} == pytest.approx(expected)
    assert metrics["items"] == 4


def test_a_training_task_or_no_checkpoint_is_refused(write_eval_config, tmp_path):
    from minigpt4.common.config import ConfigError

    cfg = write_eval_config("pope", tmp_path)
    with pytest.raises(ConfigError, match="not an evaluation task"):
        evaluate.main(["--cfg-path", str(cfg), "--options", "run.task=image_text_pretrain"])
    with pytest.raises(ConfigError, match="model.ckpt is not set"):
        evaluate.main(["--cfg-path", str(cfg), "--options", "model.ckpt=null"])
    with pytest.raises(ConfigError, match="unknown key 'evaluation.beams'"):
        evaluate.main(["--cfg-path", str(cfg), "--options", "evaluation.beams=2"])
