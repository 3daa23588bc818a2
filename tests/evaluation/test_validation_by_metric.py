"""Validation by a generation metric during training (``run.valid_generation``): the tiny stage-2 run captions
the tiny caption test set at every epoch end, keeps ``checkpoint_best.pth`` by CIDEr (official COCO evaluation),
and the value it logged for the best epoch is what ``evaluate.py`` reports for that checkpoint on the same YAML."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import evaluate
import train
from tests.evaluation.conftest import dataset_sections

REPO = Path(__file__).resolve().parents[2]
BEST = "coco_caption/test/CIDEr"


def world_paths(world: str) -> dict[str, str]:
    return {
        "vit_path": f"{world}/eva_vit_tiny.pth",
        "q_former_model": f"{world}/qformer_tiny.pth",
        "llama_model": f"{world}/llama",
    }


def write_caption_config(folder: Path, world: str, eval_sets: Path) -> Path:
    """An evaluate.py config for the tiny world's model on 12 items of the tiny caption set; its model section is
    the stage-2 model's (what evaluate.py needs), which the in-training validation does not read."""
    model = {
        "arch": "mini_gpt4",
        "model_type": "tiny",
        "max_txt_len": 64,
        "end_sym": "###",
        "prompt_template": "###Human: {} ###Assistant: ",
        **world_paths(world),
    }
    cfg = {
        "model": model,
        "datasets": dataset_sections("captioning", eval_sets, world),
        "evaluation": {"max_new_tokens": 12, "limit": 12, "progress_bar": False},
        "run": {
            "task": "captioning",
            "device": "cpu",
            "batch_size_eval": 4,
            "output_dir": str(folder),
            "job_name": "eval",
        },
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "caption.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def stage2_options(world: str, out: Path, *extra: str) -> list[str]:
    return [
        "--cfg-path",
        "train_configs/minigpt4_tiny_stage2_finetune.yaml",
        "--options",
        *(f"model.{k}={v}" for k, v in world_paths(world).items()),
        "model.ckpt=null",  # from the untrained projection: answers change from epoch to epoch
        f"datasets.cc_sbu_align.build_info.storage={world}/cc_sbu_align",
        f"run.output_dir={out}",
        "run.max_epoch=3",
        "run.iters_per_epoch=4",
        "run.batch_size_train=4",
        "run.warmup_steps=1",
        "run.log_freq=2",
        "run.progress_bar=False",
        "run.world_size=1",
        "run.distributed=False",
        *extra,
    ]


def evaluated_cider(captions: Path, ckpt: str, out: Path) -> float:
    """What evaluate.py reports as CIDEr for ``ckpt`` on the caption YAML."""
    metrics = evaluate.main(["--cfg-path", str(captions), "--options", f"model.ckpt={ckpt}", f"run.output_dir={out}"])
    return metrics["coco_caption/test"]["CIDEr"]


@pytest.fixture(scope="module")
def run_by_cider(tiny_world, eval_sets, tmp_path_factory):
    root = tmp_path_factory.mktemp("valid_generation")
    captions = write_caption_config(root / "eval", tiny_world, eval_sets)
    cwd = os.getcwd()
    os.chdir(REPO)  # the stage-2 config names prompts/alignment.txt relative to the repository
    try:
        summary = train.main(
            stage2_options(
                tiny_world,
                root / "train",
                f"run.valid_generation={captions}",
                f"run.best_metric={BEST}",
                "run.best_mode=max",
            )
        )
    finally:
        os.chdir(cwd)
    return summary, captions


def test_each_epoch_is_scored_and_the_best_is_kept(run_by_cider):
    summary, _ = run_by_cider
    run_dir = Path(summary["run_dir"])
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    vals = [r for r in records if r["kind"] == "val"]
    assert [r["epoch"] for r in vals] == [0, 1, 2]
    for r in vals:
        assert r["coco_caption/test/items"] == 12
        assert {"coco_caption/test/Bleu_4", "coco_caption/test/METEOR", "coco_caption/test/ROUGE_L"} <= set(r)
        assert "loss" not in r  # no run.valid_splits: no loss validation
    values = [r[BEST] for r in vals]
    assert len(set(values)) > 1, values  # the answers change as the projection trains: the pick means something
    best = max(values)
    assert summary["best_metric"] == BEST and summary["best_value"] == best
    assert Path(summary["best_checkpoint"]).is_file()


def test_the_logged_best_is_what_evaluate_reports_for_checkpoint_best(run_by_cider, tmp_path):
    summary, captions = run_by_cider
    assert evaluated_cider(captions, summary["best_checkpoint"], tmp_path) == summary["best_value"]


def test_best_metric_that_validation_does_not_report(tiny_world, eval_sets, tmp_path):
    captions = write_caption_config(tmp_path / "eval", tiny_world, eval_sets)
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        with pytest.raises(ValueError, match=r"run\.best_metric='loss'.*'coco_caption/test/<metric>'.*best_mode"):
            train.main(stage2_options(tiny_world, tmp_path / "train", f"run.valid_generation={captions}"))
    finally:
        os.chdir(cwd)


def test_two_ranks_share_the_items_and_agree_with_evaluate(tiny_world, eval_sets, tmp_path):
    """Under torchrun (2 ranks, gloo) each rank captions half the items; rank 0 scores them all and every rank
    takes the same checkpoint_best decision (a disagreement would hang the collective checkpoint write)."""
    captions = write_caption_config(tmp_path / "eval", tiny_world, eval_sets)
    out = tmp_path / "train"
    argv = stage2_options(
        tiny_world, out, f"run.valid_generation={captions}", f"run.best_metric={BEST}", "run.best_mode=max"
    )
    argv = [a for a in argv if a not in ("run.world_size=1", "run.distributed=False", "run.max_epoch=3")]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone", "train.py", *argv]
    cmd += ["run.max_epoch=2"]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(next(out.glob("*/summary.json")).read_text())
    records = [json.loads(line) for line in next(out.glob("*/metrics.jsonl")).read_text().splitlines()]
    vals = [r for r in records if r["kind"] == "val"]
    assert [r["coco_caption/test/items"] for r in vals] == [12, 12]  # every item once over the two ranks
    assert summary["best_value"] == max(r[BEST] for r in vals)
    assert evaluated_cider(captions, summary["best_checkpoint"], tmp_path) == summary["best_value"]
