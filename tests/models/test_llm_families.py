"""LLM families by table: every model type's family and template resolve, and a third family (Qwen2, ChatML)
trains stage 1 and 2 and chats in the tiny world through the real entry points."""

from __future__ import annotations

import argparse
import json
import os

import pytest
import torch

from minigpt4.common.config import Config
from minigpt4.conversation.templates import CONV_TEMPLATES, CONV_VISION_Qwen2, template_for
from minigpt4.models import MiniGPT4
from minigpt4.models.llm_families import LLM_FAMILIES, get_llm_family

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PUBLISHED_TEMPLATES = {
    "pretrain_vicuna0": "vicuna0",
    "tiny": "vicuna0",
    "pretrain_llama2": "llama2",
    "tiny_llama2": "llama2",
    "pretrain_qwen2": "qwen2",
    "tiny_qwen2": "qwen2",
}
PATHS = ["model.vit_path=v.pth", "model.q_former_model=q.pth", "model.llama_model=llm", "model.ckpt=m.pth"]


@pytest.mark.parametrize("model_type", sorted(PUBLISHED_TEMPLATES))
def test_model_type_defaults_name_a_family_and_a_template(tmp_path, model_type):
    path = tmp_path / "cfg.yaml"
    path.write_text(f"model:\n  arch: mini_gpt4\n  model_type: {model_type}\nrun:\n  device: cpu\n")
    cfg = Config.load(str(path), PATHS).model_cfg
    assert cfg.llm_family in LLM_FAMILIES and cfg.conv_template in CONV_TEMPLATES
    assert cfg.conv_template == PUBLISHED_TEMPLATES[model_type]
    assert cfg.llm_family == ("qwen2" if "qwen2" in model_type else "llama")
    assert template_for(cfg) is CONV_TEMPLATES[PUBLISHED_TEMPLATES[model_type]]


def test_every_model_type_comes_from_one_family():
    declared = [t for family in LLM_FAMILIES.values() for t in family.model_types]
    assert sorted(declared) == sorted(MiniGPT4.PRETRAINED_MODEL_CONFIG_DICT) == sorted(PUBLISHED_TEMPLATES)
    for model_type in declared:
        assert os.path.isfile(MiniGPT4.default_config_path(model_type)), model_type


def test_unknown_family_and_template_are_named():
    with pytest.raises(ValueError, match=r"model\.llm_family.*'gpt9'.*llama, qwen2"):
        get_llm_family("gpt9")
    with pytest.raises(ValueError, match=r"model\.conv_template.*'alpaca'"):
        template_for(argparse.Namespace(conv_template="alpaca"))


def test_a_folder_of_another_family_is_refused(tiny_world):
    from minigpt4.models.llm_families import load_causal_lm

    with pytest.raises(ValueError, match=r"holds a 'llama' model, but model\.llm_family 'qwen2'"):
        load_causal_lm(get_llm_family("qwen2"), os.path.join(tiny_world, "llama"))


# ----------------------------------------------------------------------------------------------------------
# the Qwen2 family end to end in the tiny world
# ----------------------------------------------------------------------------------------------------------


def _world_options(world: str, llm: str) -> list[str]:
    return [
        f"model.llama_model={llm}",
        f"model.vit_path={world}/eva_vit_tiny.pth",
        f"model.q_former_model={world}/qformer_tiny.pth",
    ]


def _losses(run_dir: str) -> list[float]:
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [r["loss"] for r in map(json.loads, f) if r.get("kind") == "train"]


@pytest.fixture(scope="module")
def tiny_qwen2(tmp_path_factory) -> str:
    """A tiny Qwen2 (ChatML byte-level BPE tokenizer + Qwen2ForCausalLM) pretrained briefly on the tiny world's
    language in the ChatML format, by the builder ``python -m minigpt4.tiny.build --llm-family qwen2`` uses."""
    from minigpt4.tiny import language

    out = str(tmp_path_factory.mktemp("qwen2") / "qwen2")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        stats = language.build_llm("qwen2", out, 1500, 800, language.LMConfig(steps=150), seed=0)
    finally:
        torch.set_num_threads(threads)
    assert stats["final_loss"] < 0.5 * stats["first_loss"], stats
    return out


@pytest.fixture(scope="module")
def qwen2_runs(tiny_world, tiny_qwen2, tmp_path_factory):
    import train

    out = tmp_path_factory.mktemp("qwen2_runs")
    common = ["run.log_freq=5", "run.warmup_steps=5", "run.world_size=1", "run.distributed=False"]
    cwd = os.getcwd()
    os.chdir(REPO)  # the stage-2 config names prompts/alignment.txt relative to the repository
    try:
        s1 = train.main(
            ["--cfg-path", "train_configs/minigpt4_tiny_qwen2_stage1_pretrain.yaml", "--options"]
            + _world_options(tiny_world, tiny_qwen2)
            + [
                f"datasets.laion.build_info.storage={tiny_world}/shards/laion/{{00000..00003}}.tar",
                f"datasets.cc_sbu.build_info.storage={tiny_world}/shards/cc_sbu/{{00000..00003}}.tar",
                f"run.output_dir={out}/stage1",
                "run.max_epoch=1",
                "run.iters_per_epoch=40",
                *common,
            ]
        )
        s2 = train.main(
            ["--cfg-path", "train_configs/minigpt4_tiny_qwen2_stage2_finetune.yaml", "--options"]
            + _world_options(tiny_world, tiny_qwen2)
            + [
                f"model.ckpt={s1['last_checkpoint']}",
                f"datasets.cc_sbu_align.build_info.storage={tiny_world}/cc_sbu_align",
                f"run.output_dir={out}/stage2",
                "run.iters_per_epoch=30",
                *common,
            ]
        )
    finally:
        os.chdir(cwd)
    return s1, s2


def test_qwen2_trains_stage1_and_stage2(qwen2_runs):
    # stage 2 starts low (the LLM knows the ChatML conversations), stage 1 from an untrained projection
    for summary, factor in zip(qwen2_runs, (0.85, 0.95)):
        losses = _losses(summary["run_dir"])
        assert len(losses) >= 6, losses
        assert sum(losses[-2:]) / 2 < factor * losses[0], losses


def test_qwen2_chats_in_chatml_and_stops_at_im_end(tiny_world, tiny_qwen2, qwen2_runs):
    from minigpt4.cli.common import add_model_args, load_chat

    _, s2 = qwen2_runs
    argv = ["--cfg-path", os.path.join(REPO, "eval_configs/minigpt4_tiny_qwen2_eval.yaml"), "--device", "cpu"]
    argv += ["--options", f"model.ckpt={s2['last_checkpoint']}", *_world_options(tiny_world, tiny_qwen2)]
    loaded = load_chat(add_model_args(argparse.ArgumentParser()).parse_args(argv))
    chat, tokenizer = loaded.chat, loaded.chat.tokenizer
    assert loaded.template is CONV_VISION_Qwen2
    assert type(tokenizer).__name__ == "Qwen2Tokenizer"
    assert (tokenizer.eos_token, tokenizer.pad_token, tokenizer.bos_token) == ("<|im_end|>",) + ("<|endoftext|>",) * 2

    conv, images = loaded.template.copy(), []
    chat.upload_img(os.path.join(tiny_world, "heldout", "image", "0.jpg"), conv, images)
    chat.ask("Describe this image in detail.", conv)
    answer = chat.answer(conv, images, max_new_tokens=60, do_sample=False, repetition_penalty=1.0)
    # the model ended its turn with <|im_end|> (its eos) well before the token limit
    assert answer.tokens[-1].item() == tokenizer.eos_token_id and len(answer.tokens) < 60
    assert answer.text and "<|im" not in answer.text and conv.messages[-1][1] == answer.text
    chat.ask("What colour is it?", conv)
    conv.append_message(conv.roles[1], None)
    assert conv.get_prompt().endswith(
        f"<|im_start|>assistant\n{answer.text}<|im_end|>\n<|im_start|>user\nWhat colour is it?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
