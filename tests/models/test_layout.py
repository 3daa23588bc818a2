"""Full-size modules, built on the meta device, have exactly the released checkpoints' names, shapes and dtypes."""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn

from minigpt4.models.blip2 import Blip2Base
from minigpt4.models.eva_vit import convert_weights_to_fp16

REFERENCE = os.environ.get("MINIGPT4_REFERENCE_DIR", "/work/shared/reference")


def _layout(name: str) -> dict:
    path = os.path.join(REFERENCE, name)
    if not os.path.isfile(path):
        pytest.skip(f"reference layout {path} not available")
    with open(path) as f:
        return json.load(f)


def _shapes(state: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in state.items()}


@pytest.fixture(scope="module")
def full_vit():
    vit, ln_vision = Blip2Base.init_vision_encoder("eva_clip_g", 224, 0.0, False, "fp16", device="meta")
    return vit, ln_vision


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


def test_qformer_query_tokens_ln_vision_llama_proj_layout(full_vit):
    vit, ln_vision = full_vit
    qformer, query_tokens = Blip2Base.init_Qformer(32, vit.num_features, 2, device="meta")
    llama_proj = nn.Linear(qformer.config.hidden_size, 4096, device="meta")
    state = {"query_tokens": query_tokens}
    state.update({f"ln_vision.{k}": v for k, v in ln_vision.state_dict().items()})
    state.update({f"Qformer.{k}": v for k, v in qformer.state_dict().items()})
    state.update({f"llama_proj.{k}": v for k, v in llama_proj.state_dict().items()})
    assert _shapes(state) == _layout("layout_qformer.json")
    assert state["Qformer.bert.embeddings.position_ids"].dtype == torch.int64
    names = [n for n, _ in qformer.named_parameters()]
    assert not any(n.startswith("cls.") or "word_embeddings" in n for n in names)
