"""``GenerationConfig``: one set of decoding defaults (the published demo's), read by ``Chat``."""

from __future__ import annotations

import dataclasses

import pytest

from minigpt4.conversation.conversation import Chat, CONV_VISION_Vicuna0
from minigpt4.conversation.generation import GenerationConfig

PUBLISHED_V1 = dict(
    max_new_tokens=300,
    num_beams=1,
    min_length=1,
    top_p=0.9,
    repetition_penalty=1.0,
    length_penalty=1.0,
    temperature=1.0,
    max_length=2000,
    do_sample=True,
)


def test_defaults_are_the_published_v1_demo():
    assert dataclasses.asdict(GenerationConfig()) == PUBLISHED_V1


def test_out_of_range_values_are_refused():
    with pytest.raises(ValueError, match="top_p=1.5"):
        GenerationConfig(top_p=1.5)
    with pytest.raises(ValueError, match="max_new_tokens .* smaller than max_length"):
        GenerationConfig(max_new_tokens=64, max_length=64)


@pytest.fixture()
def generate_calls(chat_model, monkeypatch):
    """The keyword arguments of every ``llama_model.generate`` call."""
    calls = []
    real = chat_model.llama_model.generate

    def spy(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(chat_model.llama_model, "generate", spy)
    return calls


def _conv(chat, image):
    conv, imgs = CONV_VISION_Vicuna0.copy(), []
    chat.upload_img(image, conv, imgs)
    chat.ask("describe the image", conv)
    return conv, imgs


def _decoding(call: dict) -> dict:
    return {k: call[k] for k in PUBLISHED_V1 if k in call}


def test_chat_decodes_with_its_config_and_keyword_overrides(chat_model, vis_processor, image, generate_calls):
    chat = Chat(chat_model, vis_processor, device="cpu")
    chat.answer(*_conv(chat, image), max_new_tokens=4)
    assert _decoding(generate_calls[-1]) == {k: v for k, v in PUBLISHED_V1.items() if k != "max_length"} | {
        "max_new_tokens": 4
    }
    greedy = GenerationConfig(do_sample=False, max_new_tokens=5, repetition_penalty=1.05)
    chat = Chat(chat_model, vis_processor, device="cpu", generation=greedy)
    chat.answer(*_conv(chat, image))
    # greedy: the sampling knobs are not passed (they would only raise warnings)
    assert _decoding(generate_calls[-1]) == {
        "max_new_tokens": 5,
        "num_beams": 1,
        "min_length": 1,
        "repetition_penalty": 1.05,
        "length_penalty": 1.0,
        "do_sample": False,
    }
    # an explicit config, then keyword overrides of it, in the batched path too
    chat.answer_batch([_conv(chat, image)[0]], [_conv(chat, image)[1]], config=GenerationConfig(), num_beams=2)
    assert _decoding(generate_calls[-1])["num_beams"] == 2 and generate_calls[-1]["do_sample"] is True
    with pytest.raises(ValueError, match="not_an_option"):  # an unknown option reaches generate, which refuses it
        chat.answer(*_conv(chat, image), max_new_tokens=2, not_an_option=1)
