"""The tiny world builder: determinism, and every file in the format the real pipeline reads."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import re
import subprocess
import sys

import torch

from minigpt4.tiny import world
from minigpt4.tiny.build import WorldSize, build
from minigpt4.tiny.language import LMConfig
from minigpt4.tiny.towers import TowerConfig

EVAL_CONFIG = "eval_configs/minigpt4_tiny_eval.yaml"
MICRO = WorldSize(
    stage1_per_source=8,
    align=4,
    heldout=4,
    lm_documents=200,
    vocab_size=600,
    lm=LMConfig(steps=2, batch_size=4),
    towers=TowerConfig(images=16, steps=2, batch_size=4),
)


def _digests(root: str) -> dict[str, str]:
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if name in ("world.json", "llm.json"):  # hold timings
                continue
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    torch.set_num_threads(2)  # the builder's default
    a, b, c = (str(tmp_path / name) for name in "abc")
    build(a, seed=3, size=MICRO)
    build(b, seed=3, size=MICRO)
    build(c, seed=4, size=MICRO)
    da, db, dc = _digests(a), _digests(b), _digests(c)
    assert da == db
    assert da.keys() == dc.keys()
    assert da["cc_sbu_align/filter_cap.json"] != dc["cc_sbu_align/filter_cap.json"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_pretrainings_show_a_progress_bar_and_log_milestones(tmp_path, monkeypatch, caplog):
    """On a terminal the world build shows each pretraining as a bar with the time left; the log (what a log
    file keeps) has the first, last and every quarter step, not a line every 100 steps."""
    steps = 8
    size = dataclasses.replace(
        MICRO, lm=LMConfig(steps=steps, batch_size=4), towers=TowerConfig(images=16, steps=steps, batch_size=4)
    )
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with caplog.at_level(logging.INFO, logger="minigpt4.tiny"):
        build(str(tmp_path / "w"), seed=3, size=size)
    bars = terminal.getvalue()
    for name in ("lm", "towers"):
        assert re.search(rf"{name} pretraining: 100%.*{steps}/{steps} \[\d\d:\d\d<00:00", bars), bars
        logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"{name} step ")]
        assert [m.split()[2] for m in logged] == ["1/8", "2/8", "4/8", "6/8", "8/8"], logged


def test_threads_default_to_the_cpus_the_process_may_use():
    one_cpu = min(os.sched_getaffinity(0))
    result = subprocess.run(
        [sys.executable, "-m", "minigpt4.tiny.build", "--help"],
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.sched_setaffinity(0, {one_cpu}),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "(default 1: the CPUs this process may use)" in " ".join(result.stdout.split())


def test_family_llm_is_built_on_demand_deterministically(tmp_path):
    from transformers import AutoTokenizer

    from minigpt4.tiny.build import build_family_llm

    torch.set_num_threads(2)
    a, b = str(tmp_path / "a" / "qwen2"), str(tmp_path / "b" / "qwen2")
    info = build_family_llm(a, "qwen2", seed=3, size=MICRO)
    build_family_llm(b, "qwen2", seed=3, size=MICRO)
    assert _digests(a) == _digests(b)
    assert (info["family"], info["seed"]) == ("qwen2", 3)
    with open(os.path.join(a, "config.json")) as f:
        assert json.load(f)["model_type"] == "qwen2"
    tok = AutoTokenizer.from_pretrained(a)
    assert (tok.eos_token, tok.pad_token) == ("<|im_end|>", "<|endoftext|>")
    ids = tok("<|im_start|>user\na red star<|im_end|>", add_special_tokens=False).input_ids
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>") and ids[-1] == tok.eos_token_id


def test_texts_name_every_attribute_once():
    import random

    rng = random.Random(0)
    for _ in range(50):
        scene = world.sample_scene(rng)
        for style in ("laion", "cc_sbu", "detailed"):
            text = world.describe(scene, style, rng)
            found = world.mentioned_values(text)
            for name, values in found.items():
                assert values in ([], [scene.labels()[name]]), (text, name)
            assert found["shape"] == [scene.shape] and found["colour"] == [scene.colour], text


def test_layout(tiny_world):
    for path in (
        "world.json",
        "llama/config.json",
        "llama/tokenizer.model",
        "eva_vit_tiny.pth",
        "qformer_tiny.pth",
        "cc_sbu_align/filter_cap.json",
        "heldout/labels.json",
        "shards/laion/00003.tar",
        "shards/cc_sbu/00000.tar",
    ):
        assert os.path.isfile(os.path.join(tiny_world, path)), path
    with open(os.path.join(tiny_world, "cc_sbu_align", "filter_cap.json")) as f:
        annotations = json.load(f)["annotations"]
    first = annotations[0]
    assert set(first) == {"image_id", "caption"}
    assert os.path.isfile(os.path.join(tiny_world, "cc_sbu_align", "image", f"{first['image_id']}.jpg"))
    assert first["caption"].count(".") >= 2  # detailed, multi-sentence


def test_tokenizer_matches_llama_conventions(tiny_world):
    from transformers import LlamaTokenizer

    tok = LlamaTokenizer.from_pretrained(os.path.join(tiny_world, "llama"))
    assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert len(tok("$$", add_special_tokens=False).input_ids) == 1
    assert len(tok("###", add_special_tokens=False).input_ids) <= 2
    text = "###Human: <Img><ImageHere></Img> Describe this image in detail. ###Assistant: a red star"
    assert tok.decode(tok(text, add_special_tokens=False).input_ids) == text


def test_towers_in_published_formats(tiny_world):
    vit = torch.load(os.path.join(tiny_world, "eva_vit_tiny.pth"), weights_only=True)
    assert {"cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.attn.q_bias"} <= set(vit)
    blip2 = torch.load(os.path.join(tiny_world, "qformer_tiny.pth"), weights_only=True)
    keys = set(blip2["model"])
    assert "query_tokens" in keys and "ln_vision.weight" in keys
    assert all(k.startswith(("Qformer.", "query_tokens", "ln_vision.")) for k in keys)


def test_data_loads_through_the_builders(tiny_world):
    from minigpt4.common.registry import registry

    laion = registry.get_builder_class("laion")(
        {
            "build_info": {"storage": os.path.join(tiny_world, "shards", "laion", "{00000..00003}.tar")},
            "vis_processor": {"train": {"name": "blip2_image_train", "image_size": 64}},
            "text_processor": {"train": {"name": "blip_caption"}},
        }
    ).build_datasets()["train"]
    sample = next(iter(laion))
    assert sample["image"].shape == (3, 64, 64)
    assert world.mentioned_values(sample["answer"])["shape"]
    align = registry.get_builder_class("cc_sbu_align")(
        {
            "build_info": {"storage": os.path.join(tiny_world, "cc_sbu_align")},
            "vis_processor": {"train": {"name": "blip2_image_train", "image_size": 64}},
            "text_processor": {"train": {"name": "blip_caption"}},
        }
    ).build_datasets()["train"]
    assert len(align) > 0 and align[0]["image"].shape == (3, 64, 64)


def test_lm_documents_are_tokenized_as_the_model_builds_its_inputs(tiny_world):
    """The tiny LLM is pretrained on the token sequences MiniGPT4.build_inputs and Chat produce (segments
    tokenized one by one), with the scene's attribute words where the image tokens go."""
    from minigpt4.common.config import Config
    from minigpt4.common.registry import registry
    from minigpt4.conversation.conversation import Chat, CONV_VISION_Vicuna0
    from minigpt4.tiny import language

    options = [
        f"model.llama_model={tiny_world}/llama",
        f"model.vit_path={tiny_world}/eva_vit_tiny.pth",
        f"model.q_former_model={tiny_world}/qformer_tiny.pth",
        "model.ckpt=null",
    ]
    cfg_path = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), EVAL_CONFIG)
    args = type("Args", (), {"cfg_path": cfg_path, "options": options})()
    model_cfg = Config(args).model_cfg
    model = registry.get_model_class(model_cfg.arch).from_config(model_cfg)
    tok = model.llama_tokenizer
    keywords, answer = "star red left small", "The image shows a small group of red stars."
    instruction = "###Human: <Img><ImageHere></Img> Describe this image in detail. ###Assistant: "
    before, after = instruction.split("<ImageHere>")
    doc = language.tokenize_document(tok, [before, keywords, after, answer + "###"], max_length=256)

    stand_in = model.embed_tokens(torch.tensor([tok(keywords, add_special_tokens=False).input_ids]))
    with torch.no_grad():
        assert model.end_sym == "###"
        embeds, mask, _ = model.build_inputs(stand_in, [answer], [instruction])
        expected = model.embed_tokens(torch.tensor([doc[:-1]]))  # the document without its eos
        assert torch.equal(embeds[:, : int(mask.sum())], expected)

        chat = Chat(model, lambda image: image, device="cpu")
        conv = CONV_VISION_Vicuna0.copy()
        conv.append_message(conv.roles[0], "<Img><ImageHere></Img> Describe this image in detail.")
        conv.append_message(conv.roles[1], None)
        before, after = conv.get_prompt().split("<ImageHere>")
        doc = language.tokenize_document(tok, [before, keywords, after, answer + "###"], max_length=256)
        prompt_len = len(doc) - len(tok(answer + "###", add_special_tokens=False).input_ids) - 1
        chat_embeds = chat.get_context_emb(conv.get_prompt(), [stand_in])
        assert torch.equal(chat_embeds, model.embed_tokens(torch.tensor([doc[:prompt_len]])))
