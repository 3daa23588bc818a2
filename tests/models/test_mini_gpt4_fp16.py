"""The published fp16 settings (``vit_precision: fp16``, ``torch_dtype: float16``) on a CPU: honoured, not replaced by
fp32, and the whole MiniGPT4 forward/backward gives the fp32 loss and projection gradient within fp16 tolerance."""

from __future__ import annotations

import logging

import pytest
import torch

from minigpt4.models import MiniGPT4
from tests.models.builders import TINY_VIT, tiny_model_cfg

#: loss and llama_proj gradient, relative: fp16 keeps 11 significant bits (rounding 2**-11 ~ 4.9e-4 per op); the
#: tiny ViT (2 blocks), Q-Former and LLM chain a few dozen rounded ops, ~1e-2 at worst (measured: <1e-4 on the
#: loss, <1e-3 on the gradient). A model that silently stayed fp32 is caught by the dtype checks instead.
LOSS_RTOL = 1e-2
GRAD_RTOL = 3e-2
#: the random tiny towers make the loss barely depend on the image, so the image tokens are compared directly:
#: the fp16 error must be a small part of what another image changes (measured: 1e-3 of it)
IMAGE_TOKEN_SHARE = 5e-2

CASES = {
    "fp16_vit": {"vit_precision": "fp16"},
    "fp16_llm": {"torch_dtype": "float16"},
}


def _samples() -> dict:
    g = torch.Generator().manual_seed(0)
    size = TINY_VIT["image_size"]
    return {
        "image": torch.randn(3, 3, size, size, generator=g),
        "answer": ["a red circle on the left of a blue square", "a star", "two orange squares"],
        "instruction_input": [
            "###Human: <Img><ImageHere></Img> Describe it. ###Assistant: ",
            "<ImageHere>",
            "<ImageHere> what?",
        ],
    }


def _loss_and_grad(model: MiniGPT4, autocast: bool = False) -> tuple[float, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.float16, enabled=autocast):
        loss = model(_samples())["loss"]
    loss.backward()
    assert torch.isfinite(loss), loss
    return loss.item(), model.llama_proj.weight.grad.clone()


@pytest.fixture(scope="module")
def fp32_reference(tiny_assets):
    model = MiniGPT4.from_config(tiny_model_cfg(tiny_assets))
    return model, _loss_and_grad(model)


def _build_like(reference: MiniGPT4, tiny_assets, **overrides) -> MiniGPT4:
    model = MiniGPT4.from_config(tiny_model_cfg(tiny_assets, **overrides))
    model.llama_proj.load_state_dict(reference.llama_proj.state_dict())  # the only randomly initialised part
    return model


def _assert_close(got: tuple[float, torch.Tensor], expected: tuple[float, torch.Tensor]) -> None:
    (loss, grad), (ref_loss, ref_grad) = got, expected
    assert abs(loss - ref_loss) <= LOSS_RTOL * abs(ref_loss), (loss, ref_loss)
    rel = (grad.float() - ref_grad).norm() / ref_grad.norm()
    assert rel <= GRAD_RTOL, f"llama_proj gradient off by {rel:.2e} (relative)"


@pytest.mark.parametrize("case", CASES)
def test_fp16_setting_is_kept_on_cpu_and_matches_fp32(case, tiny_assets, fp32_reference):
    reference, expected = fp32_reference
    model = _build_like(reference, tiny_assets, **CASES[case])
    vit_dtype = model.visual_encoder.blocks[0].attn.qkv.weight.dtype
    if case == "fp16_vit":
        assert vit_dtype == torch.float16 and model.visual_encoder.pos_embed.dtype == torch.float32
        assert model.llama_model.dtype == torch.float32
    else:
        assert model.llama_model.dtype == torch.float16 and vit_dtype == torch.float32
    assert model.llama_proj.weight.dtype == torch.float32  # the trained projection stays fp32
    _assert_close(_loss_and_grad(model), expected)

    images = _samples()["image"]
    with torch.no_grad():
        tokens, ref_tokens = model.encode_img(images)[0], reference.encode_img(images)[0]
        other_image = reference.encode_img(images.flip(0))[0]
    error, image_effect = (tokens.float() - ref_tokens).abs().max(), (other_image - ref_tokens).abs().max()
    assert error <= IMAGE_TOKEN_SHARE * image_effect, (error, image_effect)


def test_fp16_vit_and_llm_under_cpu_fp16_autocast(tiny_assets, fp32_reference):
    """Both published fp16 settings at once, inside ``torch.autocast("cpu", float16)`` as ``run.amp`` runs them."""
    reference, expected = fp32_reference
    model = _build_like(reference, tiny_assets, vit_precision="fp16", torch_dtype="float16")
    assert model.llama_model.dtype == torch.float16
    _assert_close(_loss_and_grad(model, autocast=True), expected)


def test_slow_cpu_fp16_is_announced_with_the_faster_setting(tiny_assets, caplog, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_fp16_supported", lambda: False)
    with caplog.at_level(logging.WARNING, logger="minigpt4.models.mini_gpt4"):
        MiniGPT4.from_config(tiny_model_cfg(tiny_assets, vit_precision="fp16", torch_dtype="float16"))
    text = caplog.text
    assert "model.vit_precision: fp16 without CUDA" in text and "model.vit_precision=bf16" in text
    assert "model.torch_dtype: float16 without CUDA" in text and "model.torch_dtype=bfloat16" in text
    assert "AMX-FP16" in text

    caplog.clear()
    monkeypatch.setattr(torch.cpu, "_is_amx_fp16_supported", lambda: True)  # a CPU with fp16 matrix units
    with caplog.at_level(logging.WARNING, logger="minigpt4.models.mini_gpt4"):
        MiniGPT4.from_config(tiny_model_cfg(tiny_assets, vit_precision="fp16"))
    assert "AMX-FP16" not in caplog.text
