"""The registered chat templates: names, renderings, and where an answer stops (through ``Chat``)."""

from __future__ import annotations

import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from minigpt4.conversation import templates
from minigpt4.conversation.conversation import (
    Chat,
    CONV_VISION_LLama2,
    CONV_VISION_Vicuna0,
    Conversation,
)
from minigpt4.conversation.templates import CONV_TEMPLATES, CONV_VISION_Qwen2, get_conv_template

SYSTEM = (
    "Give the following image: <Img>ImageContent</Img>. You will be able to see the image once I provide it "
    "to you. Please answer my questions."
)
GREEDY = dict(max_new_tokens=12, do_sample=False, repetition_penalty=1.0)


def test_registered_names():
    assert CONV_TEMPLATES == {"vicuna0": CONV_VISION_Vicuna0, "llama2": CONV_VISION_LLama2, "qwen2": CONV_VISION_Qwen2}
    assert get_conv_template("llama2") is CONV_VISION_LLama2
    assert templates.Conversation is Conversation  # one class, importable from both modules
    with pytest.raises(ValueError, match="model.conv_template"):
        get_conv_template("vicuna1")


def test_chatml_rendering():
    conv = CONV_VISION_Qwen2.copy()
    conv.append_message(conv.roles[0], "<Img><ImageHere></Img> What is this?")
    conv.append_message(conv.roles[1], "A red square.")
    conv.append_message(conv.roles[0], "Where?")
    conv.append_message(conv.roles[1], None)
    assert conv.get_prompt() == (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"
        "<|im_start|>user\n<Img><ImageHere></Img> What is this?<|im_end|>\n"
        "<|im_start|>assistant\nA red square.<|im_end|>\n"
        "<|im_start|>user\nWhere?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert conv.stop_strings == []  # ChatML ends a turn with <|im_end|>, the tokenizer's eos


def test_stop_strings_are_the_published_ones():
    # the published demo stops Vicuna v0 and LLaMA-2 alike at "###" (and at eos)
    assert CONV_VISION_Vicuna0.stop_strings == ["###"]
    assert CONV_VISION_LLama2.stop_strings == ["###"]
    # a template without explicit stop strings stops at the separator after an answer
    assert Conversation("S", ("U: ", "A: "), [], sep="</s>").stop_strings == ["</s>"]


class ForceText(LogitsProcessor):
    """Forces the generated tokens to be ``ids`` (then free greedy generation)."""

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids
        self.start: int | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.start = input_ids.shape[1] if self.start is None else self.start
        k = input_ids.shape[1] - self.start
        if k < len(self.ids):
            scores[:] = -float("inf")
            scores[:, self.ids[k]] = 0.0
        return scores


def _llama2_turn(chat: Chat, image) -> tuple[Conversation, list]:
    conv, images = CONV_VISION_LLama2.copy(), []
    chat.upload_img(image, conv, images)
    chat.ask("describe the image", conv)
    return conv, images


def test_llama2_answer_stops_at_hashes_as_published(chat, image):
    """The published demo generates LLaMA-2 answers with the "###" stopping criteria and keeps the text before
    "###": the answer ends there, generation stops right after it."""
    tok = chat.tokenizer
    said = tok("a red circle", add_special_tokens=False).input_ids
    hashes = tok("###", add_special_tokens=False).input_ids
    more = tok(" on the left", add_special_tokens=False).input_ids
    conv, images = _llama2_turn(chat, image)
    forcing = LogitsProcessorList([ForceText(said + hashes + more)])
    answer = chat.answer(conv, images, logits_processor=forcing, **GREEDY)
    assert answer.text == "a red circle"
    assert answer.tokens.tolist() == said + hashes  # stopped as soon as "###" was generated
    assert conv.messages[-1][1] == "a red circle"


def test_llama2_answer_stops_at_eos(chat, image):
    tok = chat.tokenizer
    said = tok("a blue square", add_special_tokens=False).input_ids
    conv, images = _llama2_turn(chat, image)
    answer = chat.answer(conv, images, logits_processor=LogitsProcessorList([ForceText(said + [tok.eos_token_id])]))
    assert answer.tokens.tolist() == said + [tok.eos_token_id]
    assert answer.text == "a blue square"
    chat.ask("and then?", conv)
    conv.append_message(conv.roles[1], None)
    first = SYSTEM + "<s>[INST] <Img><ImageHere></Img> describe the image [/INST] "
    assert conv.get_prompt() == first + "a blue square<s>[INST] and then? [/INST] "
