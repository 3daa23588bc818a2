"""One question about each of several images, answered in one batch through :meth:`Chat.answer_batch`.

Each item is a fresh conversation of the model's template: the image message, then the question (as
:meth:`Chat.ask` adds it), so a batch is prompted exactly as the chat prompts one image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from minigpt4.conversation.conversation import IMAGE_MESSAGE, Chat, Conversation


def ask_batch(
    chat: Chat, template: Conversation, images: Sequence[Tensor], questions: Sequence[str], **options: Any
) -> list[str]:
    """The answers to ``questions[i]`` about ``images[i]`` (preprocessed ``[3, H, W]`` tensors).

    ``options`` go to :meth:`Chat.answer_batch` (``max_new_tokens``, ``num_beams``, ``do_sample``, ...).
    """
    if len(images) != len(questions):
        raise ValueError(f"{len(images)} images but {len(questions)} questions")
    embeds = chat.encode_images(images)  # [B, N, D]
    convs = []
    for question in questions:
        conv = template.copy()
        conv.append_message(conv.roles[0], IMAGE_MESSAGE)
        chat.ask(question, conv)
        convs.append(conv)
    return chat.answer_batch(convs, [[embeds[i : i + 1]] for i in range(len(convs))], **options)
