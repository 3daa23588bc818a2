"""Benchmark model configurations (``tiny``, ``bench_small``): random-weight assets, the model, its batches.

The model is the project's own ``MiniGPT4`` built through ``Config`` + ``from_config`` from the YAML in
``bench/configs/``; only the asset paths come from here.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from bench.assets import LlamaDims, captions, write_llama
from bench.flops import ArchDims

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
LLAMA = {
    "tiny": LlamaDims(hidden_size=128, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
                      intermediate_size=384, vocab_size=1024, max_position_embeddings=256),
    "bench_small": LlamaDims(),
}  # fmt: skip


def config_path(name: str) -> str:
    path = os.path.join(CONFIG_DIR, f"{name}.yaml")
    if name not in LLAMA or not os.path.isfile(path):
        raise ValueError(f"unknown bench config {name!r}; known: {', '.join(LLAMA)}")
    return path


def write_vit(path: str, model_cfg: Any, seed: int = 0) -> str:
    """A random ``eva_vit_g.pth``-format state dict of the configured ViT."""
    if os.path.exists(path):
        return path
    from minigpt4.models.blip2 import vit_sizes
    from minigpt4.models.eva_vit import create_eva_vit_g

    torch.manual_seed(seed)
    vit = create_eva_vit_g(model_cfg.image_size, 0.0, False, "fp32", None, **vit_sizes(model_cfg))
    torch.save(vit.state_dict(), path + ".tmp")
    os.replace(path + ".tmp", path)
    return path


def load_config(name: str, assets: str, shards: str | None = None, options: list[str] | None = None) -> Any:
    """The validated ``Config`` of a bench configuration, writing its random assets into ``assets`` if needed."""
    from minigpt4.common.config import Config

    folder = os.path.join(assets, name)
    os.makedirs(folder, exist_ok=True)
    llama = write_llama(os.path.join(folder, "llama"), LLAMA[name])
    vit = os.path.join(folder, "eva_vit.pth")
    opts = [f"model.llama_model={llama}", f"model.vit_path={vit}", f"datasets.laion.build_info.storage={shards or vit}"]
    cfg = Config.load(config_path(name), opts + list(options or []))
    write_vit(vit, cfg.model_cfg)
    return cfg


def build_model(
    name: str, assets: str, llm_grad_ckpt: bool = False, options: list[str] | None = None
) -> tuple[torch.nn.Module, Any]:
    """``MiniGPT4.from_config`` of a bench configuration; returns the model and the ``Config``."""
    from minigpt4.common.registry import registry

    options = list(options or []) + (["model.llm_grad_checkpoint=true"] if llm_grad_ckpt else [])
    cfg = load_config(name, assets, options=options)
    model = registry.get_model_class(cfg.model_cfg.arch).from_config(cfg.model_cfg)
    return model, cfg


def head_rows(model: Any, samples: dict[str, Any]) -> int:
    """Positions the LM head is applied to in one step: every position of the padded batch, or with
    ``model.sparse_lm_head`` only those that predict an answer token."""
    from minigpt4.common.constants import IGNORE_INDEX

    with torch.no_grad():
        img_embeds, _ = model.encode_img(samples["image"])
        instructions = model._instructions(samples, len(samples["answer"]))
        _, _, labels = model.build_inputs(img_embeds, list(samples["answer"]), instructions)
    if model.cfg.sparse_lm_head:
        return int((labels[:, 1:] != IGNORE_INDEX).sum())
    return labels.numel()


def make_samples(model: Any, batch: int, seed: int = 0) -> dict[str, Any]:
    """A stage-1 batch: normalised random pixels and synthetic captions of 10-19 words."""
    g = torch.Generator().manual_seed(seed)
    size = model.cfg.image_size
    return {"image": torch.randn(batch, 3, size, size, generator=g), "answer": captions(batch, seed)}


def seq_len_of(model: Any, samples: dict[str, Any]) -> int:
    """The padded LLM sequence length of a stage-1 batch: bos + image tokens + longest caption (+ end_sym)."""
    n_img = model_dims(model).num_image_tokens
    answers = [a + model.end_sym for a in samples["answer"]]
    ids = model.llama_tokenizer(answers, add_special_tokens=False, truncation=True, max_length=model.max_txt_len)
    return 1 + n_img + max(len(x) for x in ids.input_ids)


def model_dims(model: Any) -> ArchDims:
    c, lc = model.cfg, model.llama_model.config
    return ArchDims(
        image_size=c.image_size, vit_patch_size=c.vit_patch_size, vit_width=c.vit_width, vit_depth=c.vit_depth,
        vit_mlp_dim=c.vit_mlp_dim, has_qformer=c.has_qformer, num_query_token=c.num_query_token,
        qformer_hidden_size=c.qformer_hidden_size, qformer_num_layers=c.qformer_num_layers,
        qformer_intermediate_size=c.qformer_intermediate_size, cross_attention_freq=c.cross_attention_freq,
        llm_hidden_size=lc.hidden_size, llm_num_layers=lc.num_hidden_layers,
        llm_intermediate_size=lc.intermediate_size, llm_num_heads=lc.num_attention_heads,
        llm_num_kv_heads=lc.num_key_value_heads, vocab_size=lc.vocab_size,
    )  # fmt: skip


def mean_caption_tokens(model: Any, n: int = 256) -> float:
    """Mean caption length in tokens (with end_sym) of the synthetic captions, for the record."""
    ids = model.llama_tokenizer([a + model.end_sym for a in captions(n, 1)], add_special_tokens=False).input_ids
    return sum(len(x) for x in ids) / len(ids)


__all__ = ["build_model", "load_config", "make_samples", "model_dims", "seq_len_of", "mean_caption_tokens"]
