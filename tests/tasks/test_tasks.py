"""Tasks: lookup by name, model and dataset building through the registry, the step and evaluation."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from minigpt4.common.registry import registry
from minigpt4.tasks import ImageTextPretrainTask, setup_task
from minigpt4.tasks.base_task import batch_size_of


class _LossModel(torch.nn.Module):
    """Loss = mean of the batch's ``x`` (so a weighted mean over batches is easy to check)."""

    def forward(self, samples):
        return {"loss": samples["x"].float().mean()}


def _cfg(**sections):
    base = {"run": {"task": "image_text_pretrain"}, "model": {}, "datasets": {}}
    base.update(sections)
    cfg = OmegaConf.create(base)
    return SimpleNamespace(run_cfg=cfg.run, model_cfg=cfg.model, datasets_cfg=cfg.datasets, cfg_path="x.yaml")


def test_setup_task_by_name():
    assert isinstance(setup_task(_cfg()), ImageTextPretrainTask)
    assert registry.get_task_class("image_text_pretrain") is ImageTextPretrainTask


def test_build_model_uses_the_registered_from_config(monkeypatch):
    seen = {}

    class Fake:
        @classmethod
        def from_config(cls, cfg):
            seen["cfg"] = cfg
            return "model"

    monkeypatch.setattr(registry, "get_model_class", lambda name: Fake if name == "fake_arch" else None)
    cfg = _cfg(model={"arch": "fake_arch", "model_type": "t", "k": 1})
    assert ImageTextPretrainTask().build_model(cfg) == "model"
    assert seen["cfg"].k == 1


def test_build_datasets_calls_each_builder(monkeypatch):
    class FakeBuilder:
        def __init__(self, cfg, name):
            self.cfg = cfg
            assert cfg.tag == name

        def build_datasets(self):
            return {"train": f"data of {self.cfg.tag}"}

    monkeypatch.setattr(registry, "get_builder_class", lambda name: FakeBuilder)
    cfg = _cfg(datasets={"a": {"tag": "a"}, "b": {"tag": "b"}})
    assert ImageTextPretrainTask().build_datasets(cfg) == {"a": {"train": "data of a"}, "b": {"train": "data of b"}}
    with pytest.raises(ValueError, match="no datasets configured"):
        ImageTextPretrainTask().build_datasets(_cfg())


def test_train_step_returns_the_model_loss():
    loss = ImageTextPretrainTask().train_step(_LossModel(), {"x": torch.tensor([1.0, 3.0])})
    assert loss.item() == pytest.approx(2.0)


def test_evaluation_is_a_sample_weighted_mean():
    batches = [{"x": torch.tensor([1.0, 1.0, 1.0])}, {"x": torch.tensor([5.0])}]
    result = ImageTextPretrainTask().evaluation(_LossModel(), batches, torch.device("cpu"))
    assert result == {"loss": pytest.approx(2.0), "num_samples": 4}


def test_batch_size_of():
    assert batch_size_of({"answer": ["a", "b"], "image": torch.zeros(2, 3)}) == 2
    assert batch_size_of({"answer": ["a", "b", "c"]}) == 3
    with pytest.raises(ValueError):
        batch_size_of({"n": 1})
