"""A miniature training world for the training tests: tiny model assets, a cc_sbu_align folder, webdataset
shards, and train YAMLs pointing at them. Everything is made under a temporary folder, deterministically."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

from tests.datasets.shard_utils import good_members, write_align_folder, write_good_shards, write_tar
from tests.models.builders import SENTENCES, TINY_VIT, build_assets, tiny_model_cfg

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAIN_PY = REPO_ROOT / "train.py"

CAPTIONS = [s for s in SENTENCES if "<" not in s and "[" not in s][:6]


def build_world(root: Path) -> dict[str, Any]:
    """Model assets + a 16-image cc_sbu_align folder + two tiny webdataset sources under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    assets = build_assets(str(root / "assets"))
    captions = {str(i): CAPTIONS[i % len(CAPTIONS)] for i in range(16)}
    align = write_align_folder(root / "cc_sbu_align", captions)
    write_laion_shards(root / "laion")
    write_good_shards(root / "cc_sbu", n_shards=2, per_shard=8, prefix="a blue square ")
    return {
        "root": root,
        "assets": assets,
        "align": str(align),
        "laion": str(root / "laion" / "{00000..00001}.tar"),
        "cc_sbu": str(root / "cc_sbu" / "{00000..00001}.tar"),
    }


def write_laion_shards(folder: Path) -> None:
    """Two shards of 8 good samples, each led by 4 samples whose image does not decode (counted, skipped)."""
    for shard in range(2):
        members = []
        for i in range(4):
            key = f"bad{shard}{i}"
            members += [(f"{key}.jpg", b"not an image"), (f"{key}.json", json.dumps({"caption": "broken"}).encode())]
        for i in range(8):
            members += good_members(f"{shard:05d}{i:04d}", f"a red circle s{shard} i{i}", ("JPEG", "PNG")[i % 2])
        write_tar(folder / f"{shard:05d}.tar", members)


def model_section(world: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return tiny_model_cfg(world["assets"], **overrides)


def _processors() -> dict[str, Any]:
    size = TINY_VIT["image_size"]
    return {
        "vis_processor": {"train": {"name": "blip2_image_train", "image_size": size}},
        "text_processor": {"train": {"name": "blip_caption"}},
    }


def align_datasets(world: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"cc_sbu_align": {"build_info": {"storage": world["align"]}, **_processors(), **extra}}


def stage1_datasets(world: dict[str, Any]) -> dict[str, Any]:
    return {
        "laion": {"build_info": {"storage": world["laion"]}, "sample_ratio": 3, "shuffle_buffer": 4, **_processors()},
        "cc_sbu": {"build_info": {"storage": world["cc_sbu"]}, "sample_ratio": 1, "shuffle_buffer": 4, **_processors()},
    }


def run_section(output_dir: Path, **overrides: Any) -> dict[str, Any]:
    run = {
        "task": "image_text_pretrain",
        "lr_sched": "linear_warmup_cosine_lr",
        "init_lr": 1e-2,
        "min_lr": 1e-3,
        "warmup_lr": 1e-3,
        "warmup_steps": 2,
        "weight_decay": 0.05,
        "max_epoch": 2,
        "iters_per_epoch": 4,
        "batch_size_train": 2,
        "batch_size_eval": 4,
        "num_workers": 0,
        "seed": 42,
        "amp": False,
        "device": "cpu",
        "output_dir": str(output_dir),
        "job_name": "job",
        "log_freq": 1,
        "progress_bar": False,
    }
    run.update(overrides)
    return run


def write_config(path: Path, model: dict[str, Any], datasets: dict[str, Any], run: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"model": model, "datasets": datasets, "run": run}, sort_keys=False))
    return path


def trainable(ckpt_path: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt_path, map_location="cpu", weights_only=False)["model"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 1e-6) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        diff = (a[key].float() - b[key].float()).abs().max().item()
        assert diff <= atol, f"{key}: max abs diff {diff}"


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def train_losses(run_dir: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_metrics(run_dir) if r["kind"] == "train"]


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID"):
        env.pop(key, None)
    return env


def train_command(cfg_path: Path, *options: str) -> list[str]:
    cmd = [sys.executable, str(TRAIN_PY), "--cfg-path", str(cfg_path)]
    return cmd + (["--options", *options] if options else [])


def run_train(cfg_path: Path, *options: str, timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run(
        train_command(cfg_path, *options),
        cwd=REPO_ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result
