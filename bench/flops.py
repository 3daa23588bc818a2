"""Analytic model FLOPs of one MiniGPT-4 training step (matmuls only, 2 FLOPs per multiply-add).

What runs in a stage-1/2 step, and what it costs:

- EVA ViT: frozen, under ``torch.no_grad`` -> forward only (patch embedding, attention, MLP).
- Q-Former: frozen, under ``torch.no_grad`` -> forward only; only the ``num_query_token`` queries pass through it
  (self-attention over the queries, cross-attention to the ViT tokens every ``cross_attention_freq`` layers,
  the query FFN).
- ``llama_proj`` (the only trainable layer): forward + weight gradient; no input gradient (its input comes from the
  frozen Q-Former, which does not require grad).
- LLaMA: frozen but *on the gradient path*: the loss must flow back through every layer to the image positions of
  the input embeddings, so the backward computes activation gradients (dgrad) and no weight gradients (wgrad).
  For a linear layer dgrad costs what its forward costs (1x); for the attention core (QK^T and PV, both operands
  activations) the backward costs 2x its forward. The LM head (``hidden x vocab``) is counted for every
  position, or only for the positions that predict an answer token (``model.sparse_lm_head``).

Attention scores are counted for the full ``L x L`` matrix (what the CPU kernels compute), not half of it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class ArchDims:
    """The sizes that determine FLOPs (names follow the model schema)."""

    image_size: int = 224
    vit_patch_size: int = 14
    vit_width: int = 1408
    vit_depth: int = 39
    vit_mlp_dim: int = 6144
    has_qformer: bool = True
    num_query_token: int = 32
    qformer_hidden_size: int = 768
    qformer_num_layers: int = 12
    qformer_intermediate_size: int = 3072
    cross_attention_freq: int = 2
    llm_hidden_size: int = 4096
    llm_num_layers: int = 32
    llm_intermediate_size: int = 11008
    llm_num_heads: int = 32
    llm_num_kv_heads: int = 32
    vocab_size: int = 32000

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.vit_patch_size) ** 2

    @property
    def vit_tokens(self) -> int:
        return self.num_patches + 1  # + [CLS]

    @property
    def num_image_tokens(self) -> int:
        """How many LLM positions one image takes."""
        return self.num_query_token if self.has_qformer else self.num_patches // 4

    @property
    def proj_in(self) -> int:
        return self.qformer_hidden_size if self.has_qformer else 4 * self.vit_width


def mm(m: int, k: int, n: int) -> int:
    """FLOPs of an ``[m, k] @ [k, n]`` matmul."""
    return 2 * m * k * n


def vit_forward(d: ArchDims, batch: int) -> int:
    n, w = d.vit_tokens, d.vit_width
    patch = mm(d.num_patches, 3 * d.vit_patch_size**2, w)
    layer = mm(n, w, 3 * w) + mm(n, w, w) + 2 * mm(n, w, n) + mm(n, w, d.vit_mlp_dim) + mm(n, d.vit_mlp_dim, w)
    return batch * (patch + d.vit_depth * layer)


def qformer_forward(d: ArchDims, batch: int) -> int:
    if not d.has_qformer:
        return 0
    q, h, n = d.num_query_token, d.qformer_hidden_size, d.vit_tokens
    self_attn = mm(q, h, 3 * h) + mm(q, h, h) + 2 * mm(q, h, q)
    cross = mm(q, h, h) + 2 * mm(n, d.vit_width, h) + 2 * mm(q, h, n) + mm(q, h, h)
    ffn = 2 * mm(q, h, d.qformer_intermediate_size)
    n_cross = sum(1 for i in range(d.qformer_num_layers) if i % d.cross_attention_freq == 0)
    return batch * (d.qformer_num_layers * (self_attn + ffn) + n_cross * cross)


def proj_forward(d: ArchDims, batch: int) -> int:
    return batch * mm(d.num_image_tokens, d.proj_in, d.llm_hidden_size)


def llm_parts(d: ArchDims, batch: int, seq_len: int, head_rows: int | None = None) -> dict[str, int]:
    """Forward FLOPs of the LLaMA, split into linear layers, attention core and LM head.

    ``head_rows``: positions the LM head is applied to (default every one, ``batch * seq_len``; with
    ``model.sparse_lm_head`` only those that predict an answer token).
    """
    L, D, inter = seq_len, d.llm_hidden_size, d.llm_intermediate_size
    kv = D * d.llm_num_kv_heads // d.llm_num_heads
    linear = mm(L, D, D) * 2 + mm(L, D, kv) * 2 + 3 * mm(L, D, inter)  # q, o, k, v, gate/up/down
    attn = 2 * mm(L, D, L)  # QK^T and PV over all heads
    return {
        "linear": batch * d.llm_num_layers * linear,
        "attention": batch * d.llm_num_layers * attn,
        "lm_head": mm(batch * L if head_rows is None else head_rows, D, d.vocab_size),
    }


def train_step_flops(d: ArchDims, batch: int, llm_seq_len: int, head_rows: int | None = None) -> dict[str, Any]:
    """FLOPs of one training step (frozen ViT/Q-Former/LLaMA, trainable ``llama_proj``), with a breakdown."""
    llm = llm_parts(d, batch, llm_seq_len, head_rows)
    llm_fwd = sum(llm.values())
    llm_bwd = llm["linear"] + 2 * llm["attention"] + llm["lm_head"]  # dgrad only
    parts = {
        "vit_forward": vit_forward(d, batch),
        "qformer_forward": qformer_forward(d, batch),
        "proj_forward_and_wgrad": 2 * proj_forward(d, batch),
        "llm_forward": llm_fwd,
        "llm_backward_dgrad": llm_bwd,
    }
    return {"total": sum(parts.values()), "parts": parts, "dims": asdict(d), "batch": batch, "llm_seq_len": llm_seq_len}


def generate_flops(d: ArchDims, context_len: int, new_tokens: int) -> int:
    """Forward FLOPs of greedy generation with a KV cache: one prefill of ``context_len``, then one token a step."""
    total = sum(llm_parts(d, 1, context_len).values())
    for i in range(new_tokens):
        L = context_len + i
        per = llm_parts(d, 1, 1)
        total += per["linear"] + per["lm_head"] + d.llm_num_layers * 2 * mm(1, d.llm_hidden_size, L)
    return total
