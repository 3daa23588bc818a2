"""The LLaMA family tokenizes as the published MiniGPT-4 did: the ids sentencepiece itself gives per plain-text
segment, with ``<s>`` / ``</s>`` turned into their ids the way transformers' legacy slow ``LlamaTokenizer`` did.

The expected pieces come from ``sentencepiece.SentencePieceProcessor`` on the tiny world's ``tokenizer.model``,
never from our tokenizer.
"""

from __future__ import annotations

import os
import re

import pytest

from minigpt4.conversation.templates import CONV_VISION_LLama2, CONV_VISION_Vicuna0
from minigpt4.models import MiniGPT4

SPECIAL = ("<s>", "</s>")


def published_ids(sp, text: str) -> list[int]:
    """The published tokenization: cut at the special strings, sentencepiece on each plain-text run."""
    ids: list[int] = []
    for part in re.split("(<s>|</s>)", text):
        if part in SPECIAL:
            ids.append(sp.piece_to_id(part))
        elif part:
            ids.extend(sp.encode(part))
    return ids


def _chat_prompt(template, answer: str = "a red circle on the left") -> str:
    conv = template.copy()
    conv.append_message(conv.roles[0], "<Img><ImageHere></Img> What is in the picture?")
    conv.append_message(conv.roles[1], answer)
    conv.append_message(conv.roles[0], "And the colour?")
    conv.append_message(conv.roles[1], None)
    return conv.get_prompt()


TEXTS = [
    # prompts of both templates, split where the image goes (as the model and the chat tokenize them)
    *_chat_prompt(CONV_VISION_Vicuna0).split("<ImageHere>"),
    *_chat_prompt(CONV_VISION_LLama2).split("<ImageHere>"),
    *"###Human: <Img><ImageHere></Img> Describe this image in detail. ###Assistant: ".split("<ImageHere>"),
    *"[INST] <Img><ImageHere></Img> Describe this image in detail. [/INST] ".split("<ImageHere>"),
    # answers with special strings, the pad string, leading spaces and digits
    "a red circle</s>",
    "a red circle</s></s>",
    "<s>a red circle",
    "<s> a red circle",
    "two circles</s> then 3 squares",
    " a red circle",
    "  two leading spaces",
    "$$",
    "$$ a red circle",
    "a red circle $$",
    "$$$$12",
    "1234 red circles and 56 squares\n",
    " 7 stars###",
]


@pytest.fixture(scope="module")
def sp(tiny_world):
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=os.path.join(tiny_world, "llama", "tokenizer.model"))


@pytest.fixture(scope="module")
def tokenizer(tiny_world):
    """The tokenizer of a tiny MiniGPT-4 built through ``from_config`` (the model's own)."""
    cfg = {
        "arch": "mini_gpt4",
        "model_type": "tiny",
        "vit_path": f"{tiny_world}/eva_vit_tiny.pth",
        "q_former_model": f"{tiny_world}/qformer_tiny.pth",
        "llama_model": f"{tiny_world}/llama",
        "image_size": 64,
        "vit_width": 96,
        "vit_depth": 3,
        "vit_heads": 4,
        "vit_mlp_dim": 384,
        "vit_patch_size": 8,
        "num_query_token": 16,
        "qformer_hidden_size": 64,
        "qformer_num_layers": 2,
        "qformer_num_heads": 4,
        "qformer_intermediate_size": 256,
        "vit_precision": "fp32",
        "torch_dtype": "float32",
    }
    return MiniGPT4.from_config(cfg).llama_tokenizer


@pytest.mark.parametrize("text", TEXTS)
def test_ids_equal_the_published_tokenizer(tokenizer, sp, text):
    assert tokenizer(text, add_special_tokens=False).input_ids == published_ids(sp, text)


def test_batches_pad_with_dollars_and_keep_the_published_ids(tokenizer, sp):
    texts = ["a red circle</s>", " 12 squares $$"]
    batch = tokenizer(texts, add_special_tokens=False, padding="longest", padding_side="right", return_tensors="pt")
    assert tokenizer.pad_token == "$$" and tokenizer.pad_token_id == sp.piece_to_id("$$")
    for row, mask, text in zip(batch.input_ids.tolist(), batch.attention_mask.tolist(), texts):
        expected = published_ids(sp, text)
        assert row[: len(expected)] == expected and sum(mask) == len(expected)
        assert row[len(expected) :] == [tokenizer.pad_token_id] * (len(row) - len(expected))


def test_sentencepiece_dummy_prefix_is_kept_where_the_published_code_had_it(tokenizer, sp):
    """The pieces the issue names, spelled out from sentencepiece: a ``▁`` after ``<s>`` / ``</s>`` and before
    text that starts with a space, and ``$$`` as plain text."""
    pieces = tokenizer.convert_ids_to_tokens(tokenizer("<s>[INST] hi</s> x", add_special_tokens=False).input_ids)
    inst = sp.encode("[INST] hi", out_type=str)
    assert inst[0].startswith("▁")
    assert pieces == ["<s>", *inst, "</s>", *sp.encode(" x", out_type=str)]
    assert sp.encode(" x", out_type=str)[:2] == ["▁", "▁"]
    assert tokenizer.convert_ids_to_tokens(tokenizer("$$", add_special_tokens=False).input_ids) == sp.encode(
        "$$", out_type=str
    )


def test_bos_on_plain_calls_and_decoding(tokenizer, sp):
    text = "1234 red circles\nand 5 squares"
    ids = tokenizer(text).input_ids
    assert ids == [sp.bos_id(), *sp.encode(text)]
    assert tokenizer.decode(ids, skip_special_tokens=True) == sp.decode(sp.encode(text)) == text
    assert tokenizer.decode(tokenizer("a red circle</s>").input_ids) == "<s>a red circle</s>"


def test_added_rows_of_a_vicuna_v0_folder_are_whole_tokens(tiny_world, sp, tmp_path):
    """Vicuna v0 adds ``[PAD]`` after the sentencepiece vocabulary; its folder declares it in tokenizer.json."""
    import json
    import shutil

    from minigpt4.models.llama_tokenizer import SentencePieceLlamaTokenizer

    folder = tmp_path / "vicuna0"
    folder.mkdir()
    shutil.copyfile(os.path.join(tiny_world, "llama", "tokenizer.model"), folder / "tokenizer.model")
    pad_id = sp.get_piece_size()
    with open(folder / "tokenizer.json", "w", encoding="utf-8") as f:
        json.dump({"added_tokens": [{"id": pad_id, "content": "[PAD]", "special": True}]}, f)
    tokenizer = SentencePieceLlamaTokenizer.from_folder(str(folder))
    assert len(tokenizer) == pad_id + 1 and tokenizer.convert_tokens_to_ids("[PAD]") == pad_id
    ids = tokenizer("a red[PAD] circle", add_special_tokens=False).input_ids
    assert ids == published_ids(sp, "a red") + [pad_id] + published_ids(sp, " circle")
    with open(folder / "tokenizer.json", "w", encoding="utf-8") as f:
        json.dump({"added_tokens": [{"id": pad_id + 3, "content": "[PAD]", "special": True}]}, f)
    with pytest.raises(ValueError, match="next free id"):
        SentencePieceLlamaTokenizer.from_folder(str(folder))
