"""Batched greedy generation for MiniGPT-4 from ``inputs_embeds`` (prompt text around the image tokens).

Three prompt styles, as the model meets them:

- ``stage1``: ``[bos][image]`` and nothing else (the stage-1 training sequence; answers end with ``\\n``);
- ``stage2``: ``[bos]###Human: <Img>[image]</Img> <instruction> ###Assistant: `` (the stage-2 training template);
- ``chat``: the Vicuna v0 conversation with its system message, as the demo's ``Chat`` builds it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from minigpt4.common.constants import IMAGE_PLACEHOLDER, PROMPT_TEMPLATE_VICUNA0, SYSTEM_VICUNA0

PROMPT_STYLES = ("stage1", "stage2", "chat")
DEFAULT_QUESTION = "Describe this image in detail."
IMAGE_MESSAGE = f"<Img>{IMAGE_PLACEHOLDER}</Img>"
STOP_STRINGS = ("###", "\n")


def prompt_text(style: str, question: str = DEFAULT_QUESTION) -> str:
    """The text around the image (with one ``<ImageHere>``) for ``style``."""
    if style == "stage1":
        return IMAGE_PLACEHOLDER
    if style == "stage2":
        return PROMPT_TEMPLATE_VICUNA0.format(f"{IMAGE_MESSAGE} {question}")
    if style == "chat":
        try:
            from minigpt4.conversation.conversation import CONV_VISION_Vicuna0

            conv = CONV_VISION_Vicuna0.copy()
            conv.append_message(conv.roles[0], f"{IMAGE_MESSAGE} {question}")
            conv.append_message(conv.roles[1], None)
            return conv.get_prompt()
        except ImportError:
            return f"{SYSTEM_VICUNA0}###Human: {IMAGE_MESSAGE} {question}###Assistant:"
    raise ValueError(f"unknown prompt style {style!r}; known: {', '.join(PROMPT_STYLES)}")


def prompt_embeds(model: Any, image: Tensor, prompt: str) -> Tensor:
    """``[bos][text before <ImageHere>][image tokens][text after]`` embedded: ``[B, L, D]`` (same L for all)."""
    before, after = prompt.split(IMAGE_PLACEHOLDER)
    img_embeds, _ = model.encode_img(image)  # [B, N, D]
    tokenizer = model.llama_tokenizer
    B, device = img_embeds.shape[0], img_embeds.device

    def embed(text: str, bos: bool = False) -> Tensor:
        ids = tokenizer(text, add_special_tokens=False).input_ids if text else []
        if bos:
            ids = [tokenizer.bos_token_id, *ids]
        ids_t = torch.tensor(ids, dtype=torch.long, device=device).unsqueeze(0).expand(B, -1)
        return model.embed_tokens(ids_t)  # [B, S, D]

    parts = [
        embed(before, bos=True),
        img_embeds.to(model.embed_tokens(torch.zeros(1, 1, dtype=torch.long, device=device)).dtype),
        embed(after),
    ]
    return torch.cat(parts, dim=1)


def cut_at_stop(text: str, stop_strings: tuple[str, ...] = STOP_STRINGS) -> str:
    """``text`` up to the first stop string (stripped)."""
    cut = len(text)
    for stop in stop_strings:
        index = text.find(stop)
        if index != -1:
            cut = min(cut, index)
    return text[:cut].strip()


@torch.no_grad()
def greedy_generate(
    model: Any, embeds: Tensor, max_new_tokens: int = 60, stop_strings: tuple[str, ...] = STOP_STRINGS
) -> list[str]:
    """Greedy decoding from ``embeds [B, L, D]`` with the KV cache; each text is cut at its first stop string."""
    llm, tokenizer = model.llama_model, model.llama_tokenizer
    B = embeds.shape[0]
    out = llm(inputs_embeds=embeds, use_cache=True)
    past, logits = out.past_key_values, out.logits[:, -1]
    tokens = torch.zeros(B, 0, dtype=torch.long, device=embeds.device)
    done = torch.zeros(B, dtype=torch.bool, device=embeds.device)
    for _ in range(max_new_tokens):
        next_ids = logits.argmax(dim=-1)  # [B]
        next_ids = next_ids.masked_fill(done, tokenizer.eos_token_id)
        tokens = torch.cat([tokens, next_ids[:, None]], dim=1)
        done |= next_ids == tokenizer.eos_token_id
        if tokens.shape[1] % 4 == 0 or done.all():
            texts = tokenizer.batch_decode(tokens, skip_special_tokens=True)
            done |= torch.tensor([any(s in t for s in stop_strings) for t in texts], device=done.device)
        if done.all():
            break
        out = llm(inputs_embeds=model.embed_tokens(next_ids[:, None]), past_key_values=past, use_cache=True)
        past, logits = out.past_key_values, out.logits[:, -1]
    return [cut_at_stop(t, stop_strings) for t in tokenizer.batch_decode(tokens, skip_special_tokens=True)]
