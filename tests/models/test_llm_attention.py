"""``model.attn_implementation``: sdpa (default) and eager give the same loss; flash_attention_2 needs its package."""

from __future__ import annotations

import importlib.util
import random

import pytest
import torch

from minigpt4.models import MiniGPT4
from minigpt4.models.llm_attention import check_attn_implementation
from tests.models.builders import TINY_VIT, tiny_model_cfg


def _samples() -> dict:
    size = TINY_VIT["image_size"]
    image = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    return {"image": image, "answer": ["a red circle", "a blue square on top"]}


def test_sdpa_is_the_default_and_eager_gives_the_same_loss(tiny_assets):
    losses = {}
    for name in (None, "eager"):
        cfg = tiny_model_cfg(tiny_assets, torch_dtype="float32")
        if name:
            cfg["attn_implementation"] = name
        torch.manual_seed(0)  # the same llama_proj initialisation
        random.seed(0)  # the same instruction prompt
        model = MiniGPT4.from_config(cfg).eval()
        assert model.llama_model.config._attn_implementation == (name or "sdpa")
        with torch.no_grad():
            losses[name] = model(_samples())["loss"]
    assert torch.allclose(losses[None], losses["eager"], atol=1e-5, rtol=0)


def test_flash_attention_without_its_package_fails_clearly(tiny_assets, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "flash_attn" else real(name, *a))
    cfg = tiny_model_cfg(tiny_assets, attn_implementation="flash_attention_2")
    with pytest.raises(ValueError, match="model.attn_implementation=flash_attention_2 needs the flash-attn package"):
        MiniGPT4.from_config(cfg)


def test_unknown_attention_names_the_key():
    with pytest.raises(ValueError, match="model.attn_implementation: expected one of sdpa, eager, flash_attention_2"):
        check_attn_implementation("flash")
