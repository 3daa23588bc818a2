"""``model.low_memory_build``: the frozen ViT and Q-Former built on the meta device and filled from their files give
exactly the towers of the published construction (random init, then a load over it), in every ViT precision and
from a ViT file in the released dtypes; a file that lacks tensors falls back to the published construction."""

from __future__ import annotations

import logging

import pytest
import torch

from minigpt4.models import MiniGPT4
from minigpt4.models.eva_vit import convert_weights_to_fp16, create_eva_vit_g
from tests.models.builders import TINY_VIT, build_assets, tiny_model_cfg

TOWERS = ("visual_encoder.", "ln_vision.", "Qformer.", "query_tokens")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("low_memory")
    assets = build_assets(str(root / "assets"))
    # the ViT in the released file's dtypes: conv/linear weights fp16, norms, tokens and q/v biases fp32
    vit = create_eva_vit_g(
        TINY_VIT["image_size"], 0.0, False, "fp32", assets["vit_path"], low_memory=False,
        width=TINY_VIT["vit_width"], depth=TINY_VIT["vit_depth"], num_heads=TINY_VIT["vit_heads"],
        mlp_dim=TINY_VIT["vit_mlp_dim"], patch_size=TINY_VIT["vit_patch_size"],
    )  # fmt: skip
    convert_weights_to_fp16(vit)
    torch.save(vit.state_dict(), root / "eva_vit_released_dtypes.pth")
    assets["vit_fp16_file"] = str(root / "eva_vit_released_dtypes.pth")
    assets["root"] = str(root)
    return assets


def towers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if k.startswith(TOWERS)}


def build(assets, **overrides) -> MiniGPT4:
    return MiniGPT4.from_config(tiny_model_cfg(assets, **overrides))


def assert_same_towers(a: MiniGPT4, b: MiniGPT4) -> None:
    ta, tb = towers(a), towers(b)
    assert list(ta) == list(tb)
    for key in ta:
        assert ta[key].dtype == tb[key].dtype, key
        assert torch.equal(ta[key], tb[key]), key
    grads_a = {k: p.requires_grad for k, p in a.named_parameters() if k.startswith(TOWERS)}
    assert grads_a == {k: p.requires_grad for k, p in b.named_parameters() if k.startswith(TOWERS)}


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("vit_file", ["vit_path", "vit_fp16_file"])
def test_meta_build_equals_the_published_construction(assets, precision, vit_file, caplog):
    options = {"vit_precision": precision, "vit_path": assets[vit_file]}
    with caplog.at_level(logging.INFO, logger="minigpt4"):
        low = build(assets, **options)
    assert "built on the meta device" in caplog.text
    published = build(assets, low_memory_build=False, **options)
    assert_same_towers(low, published)
    assert not [n for n, t in [*low.named_parameters(), *low.named_buffers()] if t.is_meta]
    if precision != "fp32":
        half = {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        assert low.visual_encoder.blocks[0].attn.qkv.weight.dtype == half
        assert low.visual_encoder.blocks[0].norm1.weight.dtype == torch.float32


def test_a_trainable_qformer_from_the_meta_build_trains(assets):
    model = build(assets, freeze_qformer=False)
    weight = next(p for n, p in model.Qformer.named_parameters() if n.endswith("query.weight"))
    assert weight.requires_grad
    weight.data.add_(1.0)  # writable: a copy, not a read-only mapping of the file
    assert torch.isfinite(weight).all()


def test_a_vit_file_lacking_a_tensor_falls_back(assets, caplog):
    state = torch.load(assets["vit_path"], weights_only=True)
    state.pop("blocks.0.norm1.weight")
    path = f"{assets['root']}/vit_lacking.pth"
    torch.save(state, path)
    with caplog.at_level(logging.INFO, logger="minigpt4"):
        low = build(assets, vit_path=path)
    assert "lacks 1 ViT tensors (blocks.0.norm1.weight)" in caplog.text
    assert "ViT weights missing from" in caplog.text  # the published construction's warning
    torch.manual_seed(0)
    a = build(assets, vit_path=path)
    torch.manual_seed(0)
    b = build(assets, vit_path=path, low_memory_build=False)
    assert_same_towers(a, b)  # same random init of the missing norm, same loaded rest
    assert not low.visual_encoder.blocks[0].norm1.weight.is_meta


def test_a_blip2_checkpoint_lacking_a_tensor_falls_back(assets, caplog):
    ckpt = torch.load(assets["q_former_model"], weights_only=False)
    name = next(k for k in ckpt["model"] if k.startswith("Qformer.") and k.endswith("query.bias"))
    del ckpt["model"][name]
    path = f"{assets['root']}/qformer_lacking.pth"
    torch.save(ckpt, path)
    with caplog.at_level(logging.INFO, logger="minigpt4"):
        model = build(assets, q_former_model=path)
    assert "lacks 1 Q-Former tensors" in caplog.text
    assert "Q-Former tensors missing from" in caplog.text
    assert not model.state_dict()[name].is_meta
