"""Builders of tiny model assets for the model tests: a sentencepiece tokenizer, a random tiny LLaMA folder,
an ``eva_vit_g.pth``-style ViT state dict and a BLIP-2-style ``{"model": ...}`` Q-Former checkpoint."""

from __future__ import annotations

import io
import os
from typing import Any

import torch

from minigpt4.common.constants import IMAGE_END, IMAGE_PLACEHOLDER, IMAGE_START, PAD_TOKEN

SENTENCES = [
    "a red circle on the left of a blue square",
    "a small green triangle in the middle of the picture",
    "the image shows a yellow star above a purple circle",
    "two orange squares next to a big black triangle",
    "a white circle at the bottom right corner",
    "there is a blue star and a red square",
    "Describe this image in detail.",
    "Take a look at this image and describe what you notice.",
    "Please provide a detailed description of the picture.",
    "Could you describe the contents of this image for me?",
    "###Human: <Img><ImageHere></Img> what do you see? ###Assistant: a green circle",
    "[INST] <Img><ImageHere></Img> describe it [/INST] a pink square",
]

TINY_VIT = {"vit_width": 32, "vit_depth": 2, "vit_heads": 4, "vit_mlp_dim": 64, "vit_patch_size": 8, "image_size": 32}
TINY_QFORMER = {
    "num_query_token": 8,
    "qformer_hidden_size": 32,
    "qformer_num_layers": 2,
    "qformer_num_heads": 4,
    "qformer_intermediate_size": 64,
    "cross_attention_freq": 2,
}
TINY_LLAMA = {"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4}


def write_tokenizer(folder: str, vocab_size: int = 400) -> str:
    """Train a byte-fallback BPE sentencepiece model (as LLaMA's) with ``$$`` as one piece; write tokenizer.model."""
    import sentencepiece as spm

    os.makedirs(folder, exist_ok=True)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES * 4),
        model_writer=buf,
        vocab_size=vocab_size,
        model_type="bpe",
        user_defined_symbols=[PAD_TOKEN, "###", IMAGE_START, IMAGE_END, IMAGE_PLACEHOLDER],
        byte_fallback=True,
        character_coverage=1.0,
        normalization_rule_name="identity",
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    path = os.path.join(folder, "tokenizer.model")
    with open(path, "wb") as f:
        f.write(buf.getvalue())
    return path


def write_llama(folder: str, seed: int = 0, **overrides: Any) -> str:
    """A random tiny LlamaForCausalLM saved with ``save_pretrained`` plus its tokenizer.model."""
    from transformers import LlamaConfig, LlamaForCausalLM

    write_tokenizer(folder)
    import sentencepiece as spm

    vocab = spm.SentencePieceProcessor(model_file=os.path.join(folder, "tokenizer.model")).vocab_size()
    config = LlamaConfig(
        vocab_size=vocab,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
        **{**TINY_LLAMA, **overrides},
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def write_vit(path: str, seed: int = 0, **dims: Any) -> str:
    """A tiny EVA ViT as a plain state dict (the ``eva_vit_g.pth`` format)."""
    from minigpt4.models.eva_vit import create_eva_vit_g

    d = {**TINY_VIT, **dims}
    torch.manual_seed(seed)
    vit = create_eva_vit_g(
        d["image_size"],
        0.0,
        False,
        "fp32",
        None,
        width=d["vit_width"],
        depth=d["vit_depth"],
        num_heads=d["vit_heads"],
        mlp_dim=d["vit_mlp_dim"],
        patch_size=d["vit_patch_size"],
    )
    torch.save(vit.state_dict(), path)
    return path


def write_qformer(path: str, vision_width: int = TINY_VIT["vit_width"], seed: int = 0, **dims: Any) -> str:
    """A tiny BLIP-2 checkpoint ``{"model": {Qformer.*, query_tokens, ln_vision.*, + unused text-branch keys}}``."""
    from minigpt4.models.blip2 import Blip2Base, LayerNorm

    d = {**TINY_QFORMER, **dims}
    torch.manual_seed(seed)
    qformer, query_tokens = Blip2Base.init_Qformer(
        d["num_query_token"],
        vision_width,
        d["cross_attention_freq"],
        hidden_size=d["qformer_hidden_size"],
        num_hidden_layers=d["qformer_num_layers"],
        num_attention_heads=d["qformer_num_heads"],
        intermediate_size=d["qformer_intermediate_size"],
    )
    ln_vision = LayerNorm(vision_width)
    torch.nn.init.normal_(ln_vision.weight, 1.0, 0.1)
    model = {f"Qformer.{k}": v for k, v in qformer.state_dict().items()}
    model.update({f"ln_vision.{k}": v for k, v in ln_vision.state_dict().items()})
    model["query_tokens"] = query_tokens.data
    hidden = d["qformer_hidden_size"]
    model["Qformer.cls.predictions.bias"] = torch.zeros(10)  # text-branch keys MiniGPT-4 does not keep
    model["vision_proj.weight"] = torch.zeros(8, hidden)
    torch.save({"model": model}, path)
    return path


def write_prompts(path: str) -> str:
    lines = [
        f"{IMAGE_START}{IMAGE_PLACEHOLDER}{IMAGE_END} Describe this image in detail.",
        f"{IMAGE_START}{IMAGE_PLACEHOLDER}{IMAGE_END} Please provide a detailed description of the picture.",
        "a line without the placeholder is ignored",
    ]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def build_assets(root: str) -> dict[str, str]:
    """Every tiny asset under ``root``; returns the config paths."""
    os.makedirs(root, exist_ok=True)
    return {
        "llama_model": write_llama(os.path.join(root, "llama")),
        "vit_path": write_vit(os.path.join(root, "eva_vit_tiny.pth")),
        "q_former_model": write_qformer(os.path.join(root, "qformer_tiny.pth")),
        "prompt_path": write_prompts(os.path.join(root, "prompts.txt")),
    }


def tiny_model_cfg(assets: dict[str, str], **overrides: Any) -> dict[str, Any]:
    """A ``model`` section for the tiny Q-Former variant built on ``assets``."""
    cfg: dict[str, Any] = {
        "arch": "mini_gpt4",
        "model_type": "tiny",
        **TINY_VIT,
        **TINY_QFORMER,
        "vit_precision": "fp32",
        "torch_dtype": "float32",
        "vit_path": assets["vit_path"],
        "q_former_model": assets["q_former_model"],
        "llama_model": assets["llama_model"],
        "max_txt_len": 16,
        "end_sym": "\n",
    }
    cfg.update(overrides)
    return cfg
