"""The BLIP-2 Q-Former as MiniGPT-4 keeps it: the query branch of a BERT with cross-attention to the image.

BLIP-2's Q-Former is a BERT whose layers gain a cross-attention to the image features every
``cross_attention_freq`` layers, and a separate feed-forward for the learned queries (``intermediate_query`` /
``output_query``). MiniGPT-4 only ever runs the queries, so the text branch is left out: no word or position
embeddings, no text feed-forward, no LM head. The kept parameter names equal the released checkpoint's
(``shared/reference/layout_qformer.json``): ``Qformer.bert.embeddings.LayerNorm``, ``Qformer.bert.encoder.layer.N...``,
and the ``Qformer.bert.embeddings.position_ids`` buffer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger(__name__)


@dataclass
class QformerConfig:
    """BERT-base hyper-parameters plus the Q-Former's cross-attention settings.

    Args:
        hidden_size: token width of the queries.
        num_hidden_layers: BERT layers.
        num_attention_heads: heads of self- and cross-attention.
        intermediate_size: feed-forward hidden width.
        hidden_dropout_prob: dropout after attention/feed-forward outputs.
        attention_probs_dropout_prob: dropout on attention weights.
        max_position_embeddings: length of the ``position_ids`` buffer.
        layer_norm_eps: LayerNorm epsilon.
        encoder_width: width of the image features the queries attend to.
        cross_attention_freq: a cross-attention in layers 0, f, 2f, ...
        query_length: number of learned queries.
    """

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    layer_norm_eps: float = 1e-12
    encoder_width: int = 1408
    cross_attention_freq: int = 2
    query_length: int = 32


@dataclass
class QformerOutput:
    """What the query-only BERT returns."""

    last_hidden_state: Tensor  # [B, num_query, hidden]


# ----------------------------------------------------------------------------------------------------------
# blocks
# ----------------------------------------------------------------------------------------------------------


class BertEmbeddings(nn.Module):
    """Query embeddings: LayerNorm + dropout (the text embeddings are not kept)."""

    def __init__(self, config: QformerConfig) -> None:
        super().__init__()
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.register_buffer(
            "position_ids", torch.arange(config.max_position_embeddings).expand((1, -1)).clone(), persistent=True
        )

    def forward(self, query_embeds: Tensor) -> Tensor:
        return self.dropout(self.LayerNorm(query_embeds))


class BertSelfAttention(nn.Module):
    """Multi-head attention; keys and values come from ``kv_width``-wide states (the image for cross-attention)."""

    def __init__(self, config: QformerConfig, kv_width: int) -> None:
        super().__init__()
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(f"hidden size {config.hidden_size} is not divisible by {config.num_attention_heads} heads")
        self.num_heads = config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(kv_width, config.hidden_size)
        self.value = nn.Linear(kv_width, config.hidden_size)
        self.dropout_p = config.attention_probs_dropout_prob

    def _heads(self, x: Tensor) -> Tensor:
        B, N, C = x.shape
        return x.view(B, N, self.num_heads, C // self.num_heads).transpose(1, 2)  # [B, h, N, d]

    def forward(self, hidden: Tensor, context: Tensor, mask: Tensor | None) -> Tensor:
        q, k, v = self._heads(self.query(hidden)), self._heads(self.key(context)), self._heads(self.value(context))
        p = self.dropout_p if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # [B, h, Nq, d]
        B, _, N, _ = out.shape
        return out.transpose(1, 2).reshape(B, N, -1)


class BertOutputLayer(nn.Module):
    """``LayerNorm(residual + dropout(dense(x)))``: the output of attention and of the feed-forward."""

    def __init__(self, config: QformerConfig, in_width: int) -> None:
        super().__init__()
        self.dense = nn.Linear(in_width, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class BertAttention(nn.Module):
    """Attention (``self``) followed by its output projection (``output``)."""

    def __init__(self, config: QformerConfig, kv_width: int) -> None:
        super().__init__()
        self.self = BertSelfAttention(config, kv_width)
        self.output = BertOutputLayer(config, config.hidden_size)

    def forward(self, hidden: Tensor, context: Tensor, mask: Tensor | None) -> Tensor:
        return self.output(self.self(hidden, context, mask), hidden)


class BertIntermediate(nn.Module):
    """Feed-forward expansion with GELU."""

    def __init__(self, config: QformerConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.dense(x))


class BertLayer(nn.Module):
    """Query self-attention, optional cross-attention to the image, query feed-forward.

    Args:
        config: the Q-Former hyper-parameters.
        layer_num: index of this layer; it has a cross-attention when ``layer_num % cross_attention_freq == 0``.
    """

    def __init__(self, config: QformerConfig, layer_num: int) -> None:
        super().__init__()
        self.attention = BertAttention(config, config.hidden_size)
        self.has_cross_attention = layer_num % config.cross_attention_freq == 0
        if self.has_cross_attention:
            self.crossattention = BertAttention(config, config.encoder_width)
        self.intermediate_query = BertIntermediate(config)
        self.output_query = BertOutputLayer(config, config.intermediate_size)

    def forward(self, hidden: Tensor, image: Tensor, image_mask: Tensor | None) -> Tensor:
        hidden = self.attention(hidden, hidden, None)  # queries attend to each other
        if self.has_cross_attention:
            hidden = self.crossattention(hidden, image, image_mask)  # [B, Nq, C]
        return self.output_query(self.intermediate_query(hidden), hidden)


class BertEncoder(nn.Module):
    """The stack of :class:`BertLayer`."""

    def __init__(self, config: QformerConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config, i) for i in range(config.num_hidden_layers))

    def forward(self, hidden: Tensor, image: Tensor, image_mask: Tensor | None) -> Tensor:
        for layer in self.layer:
            hidden = layer(hidden, image, image_mask)
        return hidden


# ----------------------------------------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------------------------------------


class BertModel(nn.Module):
    """Query-only BERT: ``bert(query_embeds=..., encoder_hidden_states=...).last_hidden_state``."""

    def __init__(self, config: QformerConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)

    def forward(
        self,
        query_embeds: Tensor,
        encoder_hidden_states: Tensor,
        encoder_attention_mask: Tensor | None = None,
        return_dict: bool = True,
    ) -> QformerOutput:
        """
        Args:
            query_embeds: ``[B, Nq, hidden]`` learned queries.
            encoder_hidden_states: ``[B, Ni, encoder_width]`` image features.
            encoder_attention_mask: ``[B, Ni]``, 1 for image tokens to attend to (None: all).
            return_dict: kept for the published call signature; the output is always a :class:`QformerOutput`.
        """
        mask = None
        if encoder_attention_mask is not None:
            mask = encoder_attention_mask.bool()[:, None, None, :]  # [B, 1, 1, Ni]
        hidden = self.embeddings(query_embeds)
        hidden = self.encoder(hidden, encoder_hidden_states.to(hidden.dtype), mask)
        return QformerOutput(last_hidden_state=hidden)


class Qformer(nn.Module):
    """Holder of ``bert`` so that parameter names read ``Qformer.bert.*`` as in the released checkpoints."""

    def __init__(self, config: QformerConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        self.init_weights()

    def init_weights(self) -> None:
        """BERT init (normal std 0.02); checkpoints overwrite it."""
        for module in self.modules():
            if isinstance(module, nn.Linear) and not module.weight.is_meta:
                nn.init.normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
