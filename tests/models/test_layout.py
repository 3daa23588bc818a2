"""Full-size modules, built on the meta device from the default ``pretrain_vicuna0`` model config, have exactly the
released checkpoints' names, shapes and dtypes.

The reference layouts live in ``tests/models/layouts/`` (facts about the released ``eva_vit_g.pth``, BLIP-2 and
MiniGPT-4 7B files: parameter names, shapes, dtypes); a missing layout file fails the test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from minigpt4.models import MiniGPT4
from minigpt4.models.base_model import BaseModel, freeze
from minigpt4.models.blip2 import Blip2Base, qformer_sizes, vit_sizes
from minigpt4.models.eva_vit import convert_weights_to_fp16
from minigpt4.models.mini_gpt4 import MiniGPT4Config

LAYOUTS = Path(__file__).resolve().parent / "layouts"
LAYOUT_FILES = (
    "layout_eva_vit_g.json",
    "layout_eva_vit_g_dtypes.json",
    "layout_qformer.json",
    "layout_minigpt4_7b_checkpoint.json",
)
# Vicuna-7B / LLaMA-7B as released (config.json of the Hugging Face folder)
LLAMA_7B = {
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "vocab_size": 32000,
    "max_position_embeddings": 2048,
}


def _layout(name: str) -> dict:
    path = LAYOUTS / name
    if not path.is_file():
        pytest.fail(f"reference layout {path} is missing: it is part of the repository (tests/models/layouts/)")
    with open(path) as f:
        return json.load(f)


def _shapes(state: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in state.items()}


@pytest.fixture(scope="module")
def model_cfg():
    """The ``model`` section a full-size Vicuna-0 run starts from: the schema merged with its default YAML."""
    default = OmegaConf.load(MiniGPT4.default_config_path("pretrain_vicuna0")).model
    return OmegaConf.merge(OmegaConf.structured(MiniGPT4Config), default)


@pytest.fixture(scope="module")
def full_vit(model_cfg):
    vit, ln_vision = Blip2Base.init_vision_encoder(
        model_cfg.vit_model,
        model_cfg.image_size,
        model_cfg.drop_path_rate,
        model_cfg.use_grad_checkpoint,
        model_cfg.vit_precision,
        device="meta",
        **vit_sizes(model_cfg),
    )
    return vit, ln_vision


@pytest.fixture(scope="module")
def full_qformer(model_cfg, full_vit):
    vit, _ = full_vit
    return Blip2Base.init_Qformer(
        model_cfg.num_query_token,
        vit.num_features,
        model_cfg.cross_attention_freq,
        device="meta",
        **qformer_sizes(model_cfg),
    )


def test_layout_files_are_in_the_repository():
    for name in LAYOUT_FILES:
        assert _layout(name), name


def test_eva_vit_g_names_and_shapes(full_vit):
    vit, _ = full_vit
    assert _shapes(vit.state_dict()) == _layout("layout_eva_vit_g.json")
    assert sum(p.numel() for p in vit.parameters()) == 985_894_528


def test_eva_vit_g_fp16_dtypes(full_vit):
    vit, _ = full_vit
    expected = _layout("layout_eva_vit_g_dtypes.json")
    assert {k: str(v.dtype).removeprefix("torch.") for k, v in vit.state_dict().items()} == expected


def test_convert_weights_to_fp16_only_touches_conv_and_linear():
    model = nn.Sequential(nn.Conv2d(3, 4, 2), nn.Linear(4, 4), nn.LayerNorm(4))
    convert_weights_to_fp16(model)
    assert model[0].weight.dtype == model[1].bias.dtype == torch.float16
    assert model[2].weight.dtype == torch.float32


def test_qformer_query_tokens_ln_vision_llama_proj_layout(full_vit, full_qformer):
    vit, ln_vision = full_vit
    qformer, query_tokens = full_qformer
    llama_proj = nn.Linear(qformer.config.hidden_size, LLAMA_7B["hidden_size"], device="meta")
    state = {"query_tokens": query_tokens}
    state.update({f"ln_vision.{k}": v for k, v in ln_vision.state_dict().items()})
    state.update({f"Qformer.{k}": v for k, v in qformer.state_dict().items()})
    state.update({f"llama_proj.{k}": v for k, v in llama_proj.state_dict().items()})
    assert _shapes(state) == _layout("layout_qformer.json")
    assert state["Qformer.bert.embeddings.position_ids"].dtype == torch.int64
    names = [n for n, _ in qformer.named_parameters()]
    assert not any(n.startswith("cls.") or "word_embeddings" in n for n in names)


class _FullSizeMiniGPT4(BaseModel):
    """MiniGPT-4's modules at 7B size, named and frozen as ``MiniGPT4`` keeps them (no weights, meta device)."""

    def __init__(self, vit: nn.Module, ln_vision: nn.Module, qformer: nn.Module, query_tokens: nn.Parameter) -> None:
        super().__init__()
        self.visual_encoder, self.ln_vision = freeze(vit), freeze(ln_vision)
        self.Qformer, self.query_tokens = freeze(qformer), query_tokens
        self.query_tokens.requires_grad_(False)
        with torch.device("meta"):
            self.llama_model = freeze(LlamaForCausalLM(LlamaConfig(**LLAMA_7B)))
            self.llama_proj = nn.Linear(qformer.config.hidden_size, LLAMA_7B["hidden_size"])


def test_minigpt4_7b_checkpoint_entries(full_vit, full_qformer):
    """A runner checkpoint's ``model`` holds what the released ``pretrained_minigpt4.pth`` (7B) holds."""
    model = _FullSizeMiniGPT4(*full_vit, *full_qformer)
    state = model.trainable_state_dict()
    got = {k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")} for k, v in state.items()}
    assert got == _layout("layout_minigpt4_7b_checkpoint.json")
