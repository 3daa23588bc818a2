"""The one place that lays out what the LLM reads, for training and for generation.

A sequence is ``[bos]`` followed by *pieces*: text, split on ``<ImageHere>`` with every segment tokenized on its
own without special tokens; token-id lists, used as they are (an earlier answer as the model generated it); and,
at each placeholder, the next image's embeddings. For training an answer follows (``answer + end_sym``, truncated
to ``max_answer_tokens``): its tokens are the only labelled ones. Then the batch is padded with the pad token,
on the right for training, on the left for generation::

    [bos][text before <ImageHere>][image tokens][text after][answer][pad ...]

:class:`MiniGPT4` (training), :class:`minigpt4.conversation.conversation.Chat` (the demo, the CLIs and the tiny
evaluation) all build their sequences here, so they agree token for token.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from minigpt4.common.constants import IGNORE_INDEX, IMAGE_PLACEHOLDER

Piece = str | Sequence[int]
"""Text (may hold ``<ImageHere>`` placeholders) or token ids."""


@dataclasses.dataclass
class Layout:
    """The positions of one sequence before embedding.

    Args:
        ids: token ids, one per position (the pad id at image positions).
        labels: the training targets: ``IGNORE_INDEX`` except on answer tokens.
        is_image: which positions take an image embedding.
        images: the image embeddings, ``[sum of N_i, D]``, in the order of their positions.
    """

    ids: list[int]
    labels: list[int]
    is_image: list[bool]
    images: Tensor | None

    def __len__(self) -> int:
        return len(self.ids)

    def drop_first(self, n: int) -> Layout:
        """The layout without its first ``n`` positions (image positions among them take their embeddings along)."""
        if n <= 0:
            return self
        dropped_images = sum(self.is_image[:n])
        images = self.images[dropped_images:] if self.images is not None else None
        return Layout(self.ids[n:], self.labels[n:], self.is_image[n:], images)


class SequenceBatch(NamedTuple):
    """What the LLM is called with: ``inputs_embeds [B, L, D]``, ``attention_mask [B, L]``, ``labels [B, L]``."""

    inputs_embeds: Tensor
    attention_mask: Tensor
    labels: Tensor


class SequenceBuilder:
    """Turns text pieces, token-id pieces and image embeddings into LLM inputs.

    Args:
        tokenizer: the LLM's tokenizer (``bos_token_id`` and ``pad_token_id`` set).
        embed_tokens: token ids ``[B, L]`` -> input embeddings ``[B, L, D]`` (the LLM's embedding table).
    """

    def __init__(self, tokenizer: Any, embed_tokens: Callable[[Tensor], Tensor]) -> None:
        self.tokenizer = tokenizer
        self.embed_tokens = embed_tokens

    # layouts ----------------------------------------------------------------------------------------------
    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, without special tokens, in one tokenizer call (empty text: no tokens)."""
        filled = [t for t in texts if t]
        ids = iter(self.tokenizer(filled, add_special_tokens=False).input_ids if filled else [])
        return [list(next(ids)) if t else [] for t in texts]

    def layouts(
        self,
        prompts: Sequence[Sequence[Piece]],
        images: Sequence[Sequence[Tensor]],
        answers: Sequence[str] | None = None,
        max_answer_tokens: int | None = None,
    ) -> list[Layout]:
        """One :class:`Layout` per sequence.

        Args:
            prompts: the pieces of each sequence.
            images: each sequence's image embeddings (``[N, D]`` or ``[1, N, D]``), one per placeholder, in order.
            answers: the labelled text after each prompt (training), with its end symbol already appended.
            max_answer_tokens: keep at most this many answer tokens.
        """
        if len(prompts) != len(images) or (answers is not None and len(answers) != len(prompts)):
            n_answers = "no" if answers is None else len(answers)
            raise ValueError(f"{len(prompts)} prompts, {len(images)} image lists and {n_answers} answers")
        texts: list[str] = []  # every text segment of every prompt, then the answers
        for i, (pieces, imgs) in enumerate(zip(prompts, images)):
            placeholders = sum(p.count(IMAGE_PLACEHOLDER) for p in pieces if isinstance(p, str))
            if placeholders != len(imgs):
                text = "".join(p for p in pieces if isinstance(p, str))
                raise ValueError(
                    f"sequence {i}: the prompt has {placeholders} image placeholders ({IMAGE_PLACEHOLDER}) but "
                    f"{len(imgs)} images were given: {text!r}"
                )
            texts += [segment for p in pieces if isinstance(p, str) for segment in p.split(IMAGE_PLACEHOLDER)]
        tokens = iter(self._tokenize(texts + list(answers or [])))
        layouts = [self._layout(pieces, imgs, tokens) for pieces, imgs in zip(prompts, images)]
        for layout in layouts if answers is not None else []:
            answer = next(tokens)[:max_answer_tokens]
            layout.ids += answer
            layout.labels += [IGNORE_INDEX if t == self.tokenizer.pad_token_id else t for t in answer]
            layout.is_image += [False] * len(answer)
        return layouts

    def _layout(self, pieces: Sequence[Piece], images: Sequence[Tensor], tokens: Iterator[list[int]]) -> Layout:
        """The layout of one prompt; ``tokens`` yields the ids of its text segments in order."""
        flat = [img.reshape(-1, img.shape[-1]) for img in images]  # [N_i, D] each
        sizes = iter(f.shape[0] for f in flat)
        ids, is_image = [self.tokenizer.bos_token_id], [False]
        for piece in pieces:
            if not isinstance(piece, str):
                ids += list(piece)
                is_image += [False] * len(piece)
                continue
            for j in range(piece.count(IMAGE_PLACEHOLDER) + 1):
                if j:  # the image between two segments
                    n = next(sizes)
                    ids += [self.tokenizer.pad_token_id] * n
                    is_image += [True] * n
                segment = next(tokens)
                ids += segment
                is_image += [False] * len(segment)
        stacked = torch.cat([f.to(flat[0]) for f in flat]) if flat else None  # [sum N_i, D]
        return Layout(ids, [IGNORE_INDEX] * len(ids), is_image, stacked)

    # embeddings -------------------------------------------------------------------------------------------
    def embed(
        self, layouts: Sequence[Layout], device: torch.device | str, padding_side: str = "right"
    ) -> SequenceBatch:
        """Pad the layouts to one length (with the pad token, attention 0, label ``IGNORE_INDEX``) and embed them;
        image positions take their image embeddings (cast to the embedding dtype)."""
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        length = max(len(layout) for layout in layouts)

        def padded(values: list, fill: Any) -> list:
            fills = [fill] * (length - len(values))
            return fills + values if padding_side == "left" else values + fills

        pad_id = self.tokenizer.pad_token_id
        ids = torch.tensor([padded(layout.ids, pad_id) for layout in layouts], device=device)  # [B, L]
        labels = torch.tensor([padded(layout.labels, IGNORE_INDEX) for layout in layouts], device=device)
        mask = torch.tensor([padded([1] * len(layout), 0) for layout in layouts], device=device)
        embeds = self.embed_tokens(ids)  # [B, L, D]
        images = [layout.images for layout in layouts if layout.images is not None]
        if images:
            is_image = torch.tensor([padded(layout.is_image, False) for layout in layouts], device=device)
            embeds = embeds.masked_scatter(is_image.unsqueeze(-1), torch.cat([img.to(embeds) for img in images]))
        return SequenceBatch(embeds, mask, labels)

    def prompt(self, pieces: Sequence[Piece], images: Sequence[Tensor], device: torch.device | str) -> Tensor:
        """The input embeddings ``[1, T, D]`` of one prompt (generation: no answer, no padding)."""
        return self.embed(self.layouts([pieces], [images]), device).inputs_embeds

    def training_batch(
        self, img_embeds: Tensor, instructions: Sequence[str], answers: Sequence[str], max_answer_tokens: int
    ) -> SequenceBatch:
        """``[bos][before][image][after][answer]`` per sample, right-padded, labels on the answer tokens.

        Args:
            img_embeds: ``[B, N, D]``, one image per sample.
            instructions: one per sample, each with exactly one ``<ImageHere>``.
            answers: one per sample, the end symbol already appended; truncated to ``max_answer_tokens`` tokens.
        """
        layouts = self.layouts(
            [[text] for text in instructions], [[img] for img in img_embeds], answers, max_answer_tokens
        )
        return self.embed(layouts, img_embeds.device)
