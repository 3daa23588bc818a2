"""MiniGPT4 invariants on a tiny model: what trains, how the batch is built, how the loss and checkpoints behave."""

from __future__ import annotations

import os
import sys

import pytest
import torch

from minigpt4.common.constants import IGNORE_INDEX
from minigpt4.common.registry import registry
from minigpt4.models import MiniGPT4
from tests.models.builders import TINY_VIT, tiny_model_cfg

TEMPLATE = "###Human: {} ###Assistant: "
INSTRUCTIONS = [
    TEMPLATE.format("<Img><ImageHere></Img> Describe this image in detail."),
    TEMPLATE.format("<Img><ImageHere></Img> what do you see?"),
    "<ImageHere>",
]
ANSWERS = ["a red circle on the left of a blue square", "a star", "two orange squares next to a big black triangle"]


def _images(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, TINY_VIT["image_size"], TINY_VIT["image_size"], generator=g)


def _samples(n: int = 3) -> dict:
    return {"image": _images(n), "answer": ANSWERS[:n], "instruction_input": INSTRUCTIONS[:n]}


def test_registered_under_both_names():
    assert registry.get_model_class("mini_gpt4") is MiniGPT4
    assert registry.get_model_class("minigpt4") is MiniGPT4
    for model_type in MiniGPT4.PRETRAINED_MODEL_CONFIG_DICT:
        assert os.path.isfile(MiniGPT4.default_config_path(model_type))


def test_only_llama_proj_gets_gradients(tiny_model):
    tiny_model.zero_grad(set_to_none=True)
    tiny_model.train()
    loss = tiny_model(_samples())["loss"]
    loss.backward()
    with_grad = {n for n, p in tiny_model.named_parameters() if p.grad is not None}
    assert with_grad == {"llama_proj.weight", "llama_proj.bias"}
    assert not tiny_model.visual_encoder.training and not tiny_model.Qformer.training
    # the same entries as a released 7B checkpoint's "model" (tests/models/layouts/layout_minigpt4_7b_checkpoint.json)
    assert set(tiny_model.trainable_state_dict()) == {
        "llama_proj.weight",
        "llama_proj.bias",
        "Qformer.bert.embeddings.position_ids",
    }
    tiny_model.zero_grad(set_to_none=True)


def test_labels_mask_bos_prompt_image_and_padding(tiny_model):
    tok = tiny_model.llama_tokenizer
    img_embeds, _ = tiny_model.encode_img(_images(3))
    n_img = img_embeds.shape[1]
    embeds, mask, labels = tiny_model.build_inputs(img_embeds, ANSWERS, INSTRUCTIONS)
    assert embeds.shape[:2] == mask.shape == labels.shape
    for i, (instruction, answer) in enumerate(zip(INSTRUCTIONS, ANSWERS)):
        before, after = instruction.split("<ImageHere>")
        n_before = len(tok(before, add_special_tokens=False).input_ids) if before else 0
        n_after = len(tok(after, add_special_tokens=False).input_ids) if after else 0
        ans = tok(answer + "\n", add_special_tokens=False).input_ids[: tiny_model.max_txt_len]
        start = 1 + n_before + n_img + n_after
        assert (labels[i, :start] == IGNORE_INDEX).all()
        assert labels[i, start : start + len(ans)].tolist() == ans
        assert (labels[i, start + len(ans) :] == IGNORE_INDEX).all()
        assert mask[i].sum() == start + len(ans) and (mask[i, : start + len(ans)] == 1).all()
        # bos embedding first, image tokens right after the text before the placeholder
        bos = tiny_model.embed_tokens(torch.tensor([tok.bos_token_id]))[0]
        torch.testing.assert_close(embeds[i, 0], bos)
        torch.testing.assert_close(embeds[i, 1 + n_before : 1 + n_before + n_img], img_embeds[i])


def test_answers_are_truncated_to_max_txt_len(tiny_model):
    img_embeds, _ = tiny_model.encode_img(_images(1))
    long_answer = " ".join(["a red circle"] * 30)
    _, _, labels = tiny_model.build_inputs(img_embeds, [long_answer], ["<ImageHere>"])
    assert (labels != IGNORE_INDEX).sum() == tiny_model.max_txt_len


def test_batch_loss_is_token_weighted_mean_of_sample_losses(tiny_model):
    samples = _samples()
    with torch.no_grad():
        batch = tiny_model(samples)["loss"]
        total, count = 0.0, 0
        for i in range(3):
            one = {"image": samples["image"][i : i + 1], "answer": [ANSWERS[i]], "instruction_input": [INSTRUCTIONS[i]]}
            img_embeds, _ = tiny_model.encode_img(one["image"])
            _, _, labels = tiny_model.build_inputs(img_embeds, one["answer"], one["instruction_input"])
            n = int((labels[:, 1:] != IGNORE_INDEX).sum())
            total += float(tiny_model(one)["loss"]) * n
            count += n
    torch.testing.assert_close(batch, torch.tensor(total / count), rtol=1e-4, atol=1e-5)


def test_stage2_prompt_list_is_wrapped_by_template(tiny_assets):
    model = MiniGPT4.from_config(
        tiny_model_cfg(tiny_assets, prompt_path=tiny_assets["prompt_path"], prompt_template=TEMPLATE)
    )
    assert len(model.prompt_list) == 2
    assert all(
        p.startswith("###Human: <Img><ImageHere></Img> ") and p.endswith("###Assistant: ") for p in model.prompt_list
    )
    loss = model({"image": _images(2), "answer": ANSWERS[:2]})["loss"]
    assert torch.isfinite(loss)


def test_checkpoint_round_trip_reproduces_loss(tiny_assets, tmp_path):
    model = MiniGPT4.from_config(tiny_model_cfg(tiny_assets))
    torch.nn.init.normal_(model.llama_proj.weight, std=0.5)
    with torch.no_grad():
        before = model(_samples())["loss"]
    path = tmp_path / "checkpoint_0.pth"
    torch.save({"model": model.trainable_state_dict(), "epoch": 0}, path)
    reloaded = MiniGPT4.from_config(tiny_model_cfg(tiny_assets, ckpt=str(path)))
    with torch.no_grad():
        after = reloaded(_samples())["loss"]
    torch.testing.assert_close(before, after)


def test_released_projection_only_checkpoint_loads(tiny_model, tiny_assets, tmp_path):
    hidden = tiny_model.llama_model.config.hidden_size
    state = {"llama_proj.weight": torch.full((hidden, 32), 0.01), "llama_proj.bias": torch.zeros(hidden)}
    path = tmp_path / "pretrained_minigpt4.pth"
    torch.save({"model": state}, path)
    model = MiniGPT4.from_config(tiny_model_cfg(tiny_assets, ckpt=str(path)))
    torch.testing.assert_close(model.llama_proj.weight, state["llama_proj.weight"])


def test_projection_size_mismatch_names_both_shapes(tiny_model, tmp_path):
    hidden = tiny_model.llama_model.config.hidden_size
    path = tmp_path / "other_size.pth"
    torch.save({"model": {"llama_proj.weight": torch.zeros(hidden + 16, 32)}}, path)
    with pytest.raises(ValueError) as err:
        tiny_model.load_checkpoint(str(path))
    message = str(err.value)
    assert f"({hidden + 16}, 32)" in message and f"({hidden}, 32)" in message and "LLM size" in message


def test_llama2_variant_groups_patches_by_four(tiny_assets):
    model = MiniGPT4.from_config(
        tiny_model_cfg(tiny_assets, model_type="tiny_llama2", has_qformer=False, end_sym="</s>")
    )
    assert model.Qformer is None and model.query_tokens is None
    assert model.llama_proj.in_features == 4 * TINY_VIT["vit_width"]
    img_embeds, atts = model.encode_img(_images(2))
    n_patches = (TINY_VIT["image_size"] // TINY_VIT["vit_patch_size"]) ** 2
    assert img_embeds.shape[:2] == atts.shape == (2, n_patches // 4)
    samples = {
        "image": _images(2),
        "answer": ANSWERS[:2],
        "instruction_input": ["[INST] <Img><ImageHere></Img> hi [/INST] "] * 2,
    }
    loss = model(samples)["loss"]
    loss.backward()
    assert {n for n, p in model.named_parameters() if p.grad is not None} == {"llama_proj.weight", "llama_proj.bias"}


def test_lora_adapters_train_with_the_projection(tiny_assets):
    model = MiniGPT4.from_config(tiny_model_cfg(tiny_assets, lora_r=2))
    model.train()
    model(_samples(2))["loss"].backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    lora = {n for n in with_grad if "lora_" in n}
    assert lora and with_grad == lora | {"llama_proj.weight", "llama_proj.bias"}
    assert lora <= set(model.trainable_state_dict())
    ids = torch.tensor([[1, 5, 6]])
    assert model.embed_tokens(ids).shape == (1, 3, model.llama_model.config.hidden_size)


def test_llm_gradient_checkpointing_still_trains_the_projection(tiny_assets):
    model = MiniGPT4.from_config(tiny_model_cfg(tiny_assets, llm_grad_checkpoint=True))
    model.train()
    llm = model.llama_model
    assert getattr(llm, "is_activation_checkpointing", None) or llm.is_gradient_checkpointing
    model(_samples(2))["loss"].backward()
    assert model.llama_proj.weight.grad is not None and model.llama_proj.weight.grad.abs().sum() > 0


def test_runs_under_cpu_bf16_autocast(tiny_model):
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        loss = tiny_model(_samples(2))["loss"]
    assert torch.isfinite(loss)


def test_low_resource_without_gpu_fails_clearly(tiny_assets):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="bitsandbytes"):
        MiniGPT4.from_config(tiny_model_cfg(tiny_assets, low_resource=True))


def test_low_resource_without_the_8bit_extra_names_it(tiny_assets, monkeypatch):
    monkeypatch.setitem(sys.modules, "accelerate", None)  # as if not installed (it is not a default dependency)
    with pytest.raises(RuntimeError) as err:
        MiniGPT4.from_config(tiny_model_cfg(tiny_assets, low_resource=True))
    msg = str(err.value)
    assert 'pip install -e ".[8bit]"' in msg and "model.low_resource" in msg
    assert "missing here: " in msg and "accelerate" in msg.split("missing here: ")[1]


def test_missing_vit_weights_say_what_to_download(tiny_assets, tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        MiniGPT4.from_config(tiny_model_cfg(tiny_assets, vit_path=str(tmp_path / "eva_vit_g.pth")))
    assert "eva_vit_g.pth" in str(err.value) and "model.vit_path" in str(err.value)


def test_tokenizer_pads_with_dollars_and_adds_bos_on_plain_calls(tiny_model):
    tok = tiny_model.llama_tokenizer
    assert tok.pad_token == "$$" and tok.pad_token_id not in (None, tok.unk_token_id)
    assert tok.convert_ids_to_tokens(tok("$$", add_special_tokens=False).input_ids)[-1] == "$$"
    assert tok("a red circle").input_ids[0] == tok.bos_token_id
    assert tok("a red circle", add_special_tokens=False).input_ids[0] != tok.bos_token_id


def test_bfloat16_llm_on_cpu(tiny_assets):
    model = MiniGPT4.from_config(tiny_model_cfg(tiny_assets, torch_dtype="bfloat16"))
    assert model.llama_model.dtype == torch.bfloat16 and model.llama_proj.weight.dtype == torch.float32
    loss = model(_samples(2))["loss"]
    loss.backward()
    assert model.llama_proj.weight.grad is not None


def test_maybe_autocast_is_off_for_an_fp32_model_on_cpu(tiny_model):
    with tiny_model.maybe_autocast():
        assert not torch.is_autocast_enabled("cpu")
    with tiny_model.maybe_autocast(torch.bfloat16):
        assert torch.is_autocast_enabled("cpu")


def test_packaged_alignment_prompts_resolve_from_any_directory(tmp_path, monkeypatch):
    from minigpt4.models.mini_gpt4 import load_prompts

    monkeypatch.chdir(tmp_path)
    prompts = load_prompts("prompts/alignment.txt", TEMPLATE)
    assert len(prompts) == 4
    assert prompts[0] == "###Human: <Img><ImageHere></Img> Describe this image in detail. ###Assistant: "


def test_blip2_checkpoint_loads_qformer_and_skips_text_branch(tiny_model, tiny_assets):
    state = torch.load(tiny_assets["q_former_model"], weights_only=True)["model"]
    own = tiny_model.state_dict()
    for key in ("query_tokens", "ln_vision.weight", "Qformer.bert.encoder.layer.0.crossattention.self.key.weight"):
        torch.testing.assert_close(own[key], state[key])
    assert "Qformer.cls.predictions.bias" not in own and "vision_proj.weight" not in own


@pytest.mark.parametrize("lora_r", [0, 2])
def test_sparse_lm_head_gives_the_published_loss_and_gradients(tiny_assets, lora_r):
    results = {}
    for sparse in (False, True):
        torch.manual_seed(0)
        model = MiniGPT4.from_config(tiny_model_cfg(tiny_assets, sparse_lm_head=sparse, lora_r=lora_r))
        model.train()
        loss = model(_samples())["loss"]
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results[sparse] = (loss.detach(), grads)
    (full_loss, full_grads), (sparse_loss, sparse_grads) = results[False], results[True]
    torch.testing.assert_close(sparse_loss, full_loss, rtol=1e-5, atol=1e-6)
    assert sparse_grads.keys() == full_grads.keys() and "llama_proj.weight" in sparse_grads
    for name, grad in full_grads.items():
        torch.testing.assert_close(sparse_grads[name], grad, rtol=1e-4, atol=1e-6)


def test_bf16_vit_precision_stores_the_frozen_vit_in_bf16(tiny_assets):
    torch.manual_seed(0)
    model = MiniGPT4.from_config(tiny_model_cfg(tiny_assets, vit_precision="bf16"))
    torch.manual_seed(0)
    reference = MiniGPT4.from_config(tiny_model_cfg(tiny_assets))
    assert model.visual_encoder.patch_embed.proj.weight.dtype == torch.bfloat16
    assert model.visual_encoder.blocks[0].mlp.fc1.weight.dtype == torch.bfloat16
    assert model.visual_encoder.blocks[0].norm1.weight.dtype == torch.float32
    assert model.autocast_dtype == torch.bfloat16  # maybe_autocast runs the ViT in bf16, also on CPU
    images = _images(2)
    with torch.no_grad():
        fast, _ = model.encode_img(images)
        exact, _ = reference.encode_img(images)
    torch.testing.assert_close(fast.float(), exact, rtol=0.05, atol=0.05)
    with pytest.raises(ValueError, match="bf16"):
        MiniGPT4.from_config(tiny_model_cfg(tiny_assets, vit_precision="int8"))


def test_compile_networks_compiles_what_the_forward_calls(tiny_assets):
    model = MiniGPT4.from_config(tiny_model_cfg(tiny_assets))
    model.train()
    eager = model(_samples(2))["loss"]
    names = model.compile_networks(backend="eager")  # the wiring; inductor is what run.compile uses
    assert names == ["visual_encoder", "llama_model.model", "Qformer.bert"]
    assert model.Qformer.bert._compiled_call_impl is not None
    compiled = model(_samples(2))["loss"]
    torch.testing.assert_close(compiled, eager)
