"""A toy model, dataset and config for fast runner tests (no transformers, no files but the run folder).

The toy model has MiniGPT-4's shape where it matters to the runner: a frozen tower, a trainable projection
(a 2-d weight, a bias) and a trainable 1-d norm, ``trainable_state_dict()`` and ``model(samples)["loss"]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import Tensor, nn
from torch.utils.data import Dataset

from minigpt4.common.run_config import RunConfig
from minigpt4.runners.runner_base import RunnerBase
from minigpt4.tasks.image_text_pretrain import ImageTextPretrainTask


class ToyModel(nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.tower = nn.Linear(12, 8)
        self.llama_proj = nn.Linear(8, 4)
        self.norm = nn.LayerNorm(4)
        self.dropout = nn.Dropout(0.1)  # uses the torch RNG: resume must restore it
        for param in self.parameters():
            param.data = torch.randn(param.shape, generator=gen) * 0.3
        for param in self.tower.parameters():
            param.requires_grad_(False)
        self.forward_calls = 0

    def forward(self, samples: dict[str, Any]) -> dict[str, Tensor]:
        self.forward_calls += 1
        with torch.no_grad():
            feats = self.tower(samples["image"].flatten(1))  # [B, 8]
        out = self.norm(self.llama_proj(self.dropout(feats)))  # [B, 4]
        target = samples["target"]
        return {"loss": ((out - target) ** 2).mean()}

    def trainable_state_dict(self) -> dict[str, Tensor]:
        trainable = {name for name, p in self.named_parameters() if p.requires_grad}
        return {k: v.detach().clone() for k, v in self.state_dict().items() if k in trainable}


class ToyDataset(Dataset):
    """``n`` samples ``{"image": [3, 2, 2], "target": [4], "answer": str}``, fixed by ``seed``."""

    def __init__(self, n: int = 32, seed: int = 1) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.images = torch.randn(n, 3, 2, 2, generator=gen)
        self.targets = torch.randn(n, 4, generator=gen)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": self.images[index], "target": self.targets[index], "answer": f"sample {index}"}


class ToyConfig:
    """The parts of :class:`~minigpt4.common.config.Config` the runner uses."""

    def __init__(self, output_dir: Path, **run: Any) -> None:
        base = {
            "init_lr": 0.05,
            "min_lr": 0.001,
            "warmup_lr": 0.001,
            "warmup_steps": 2,
            "max_epoch": 2,
            "iters_per_epoch": 4,
            "batch_size_train": 2,
            "batch_size_eval": 4,
            "device": "cpu",
            "output_dir": str(output_dir),
            "job_name": "toy",
            "log_freq": 1,
            "progress_bar": False,
            "tensorboard": False,
        }
        base.update(run)
        run_cfg = OmegaConf.merge(OmegaConf.structured(RunConfig), base)
        self.config = OmegaConf.create(
            {"model": {"arch": "toy"}, "datasets": {"toy": {"batch_size": None, "sample_ratio": 1.0}}, "run": run_cfg}
        )
        self.cfg_path = "toy.yaml"

    @property
    def run_cfg(self) -> Any:
        return self.config.run

    @property
    def datasets_cfg(self) -> Any:
        return self.config.datasets

    @property
    def model_cfg(self) -> Any:
        return self.config.model

    def to_dict(self) -> dict[str, Any]:
        return OmegaConf.to_container(self.config, resolve=True)

    def to_yaml(self) -> str:
        return OmegaConf.to_yaml(self.config, resolve=True)


def make_runner(
    output_dir: Path, model: ToyModel | None = None, datasets: dict | None = None, seed: int = 0, **run: Any
) -> RunnerBase:
    """A runner over the toy model and data; seeds the global RNGs as train.py does."""
    from train import setup_seeds

    cfg = ToyConfig(output_dir, **run)
    setup_seeds(cfg.run_cfg.seed)
    model = model if model is not None else ToyModel(seed)
    datasets = datasets if datasets is not None else {"toy": {"train": ToyDataset(), "val": ToyDataset(8, seed=2)}}
    return RunnerBase(cfg, ImageTextPretrainTask(), model, datasets, job_id=cfg.run_cfg.job_name or "toy")
