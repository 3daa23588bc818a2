"""The query-only Q-Former: layer structure and the function of one layer against a by-hand reference."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from minigpt4.models.blip2 import Blip2Base


def _build(freq: int = 2, layers: int = 4):
    torch.manual_seed(0)
    qformer, query_tokens = Blip2Base.init_Qformer(
        4, 24, freq, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=32
    )
    return qformer.eval(), query_tokens


def test_cross_attention_every_freq_layers():
    qformer, query_tokens = _build(freq=2, layers=4)
    assert [layer.has_cross_attention for layer in qformer.bert.encoder.layer] == [True, False, True, False]
    assert query_tokens.shape == (1, 4, 16)
    assert qformer.bert.encoder.layer[0].crossattention.self.key.in_features == 24
    assert qformer.bert.embeddings.position_ids.shape == (1, 512)


def _attention(attn, hidden, context, heads, mask=None):
    B, N, C = hidden.shape
    q = attn.self.query(hidden).view(B, N, heads, -1).transpose(1, 2)
    k = attn.self.key(context).view(B, context.shape[1], heads, -1).transpose(1, 2)
    v = attn.self.value(context).view(B, context.shape[1], heads, -1).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / (C // heads) ** 0.5
    if mask is not None:
        scores = scores.masked_fill(~mask.bool()[:, None, None, :], float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, N, C)
    return attn.output.LayerNorm(attn.output.dense(out) + hidden)


def test_one_layer_matches_bert_math():
    qformer, query_tokens = _build(freq=1, layers=1)
    image = torch.randn(2, 7, 24)
    mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2])
    queries = query_tokens.expand(2, -1, -1)
    with torch.no_grad():
        out = qformer.bert(
            query_embeds=queries, encoder_hidden_states=image, encoder_attention_mask=mask, return_dict=True
        ).last_hidden_state
        layer = qformer.bert.encoder.layer[0]
        h = qformer.bert.embeddings.LayerNorm(queries)
        h = _attention(layer.attention, h, h, 2)
        h = _attention(layer.crossattention, h, image, 2, mask)
        ffn = layer.output_query.dense(F.gelu(layer.intermediate_query.dense(h)))
        expected = layer.output_query.LayerNorm(ffn + h)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
