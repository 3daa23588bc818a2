"""``SequenceBuilder``: one layout for training and generation (token ids, image positions, labels, padding)."""

from __future__ import annotations

import pytest
import torch

from minigpt4.common.constants import IGNORE_INDEX
from minigpt4.models.sequence_builder import SequenceBuilder

TEMPLATE = "###Human: <Img><ImageHere></Img> {} ###Assistant: "


@pytest.fixture(scope="module")
def builder(tiny_model) -> SequenceBuilder:
    return tiny_model.sequences


def _ids(builder: SequenceBuilder, text: str) -> list[int]:
    return builder.tokenizer(text, add_special_tokens=False).input_ids


def _images(n: int, tokens: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, tokens, width, generator=torch.Generator().manual_seed(seed))


def test_training_layout_is_bos_before_image_after_answer(builder, tiny_model):
    width = tiny_model.llama_model.config.hidden_size
    images = _images(2, 3, width)
    instructions = [TEMPLATE.format("what is it?"), "<ImageHere>"]
    answers = ["a red circle###", "a very long answer " * 10]
    batch = builder.training_batch(images, instructions, answers, max_answer_tokens=8)
    pad = builder.tokenizer.pad_token_id
    for i, (instruction, answer) in enumerate(zip(instructions, answers)):
        before, after = instruction.split("<ImageHere>")
        prompt = [builder.tokenizer.bos_token_id, *_ids(builder, before), *[pad] * 3, *_ids(builder, after)]
        answer_ids = _ids(builder, answer)[:8]
        n = len(prompt) + len(answer_ids)
        expected = builder.embed_tokens(torch.tensor([prompt + answer_ids]))[0]
        start = 1 + len(_ids(builder, before))
        expected[start : start + 3] = images[i]
        torch.testing.assert_close(batch.inputs_embeds[i, :n], expected)
        assert batch.labels[i].tolist() == [IGNORE_INDEX] * len(prompt) + answer_ids + [IGNORE_INDEX] * (
            batch.labels.shape[1] - n
        )
        assert batch.attention_mask[i].tolist() == [1] * n + [0] * (batch.labels.shape[1] - n)  # right padding


def test_generation_prompt_is_the_training_prefix(builder, tiny_model):
    """Chat's prompt embeddings equal the training sequence up to the answer: the model is asked as it learnt."""
    width = tiny_model.llama_model.config.hidden_size
    image = _images(1, 4, width)
    instruction = TEMPLATE.format("Describe this image in detail.")
    train = builder.training_batch(image, [instruction], ["a red circle###"], max_answer_tokens=32)
    prompt = builder.prompt([instruction], [image], "cpu")  # [1, T, D]
    assert torch.equal(train.inputs_embeds[:, : prompt.shape[1]], prompt)
    assert (train.labels[:, : prompt.shape[1]] == IGNORE_INDEX).all()


def test_token_id_pieces_and_several_images(builder, tiny_model):
    width = tiny_model.llama_model.config.hidden_size
    first, second = _images(1, 2, width, seed=1), _images(1, 3, width, seed=2)
    answer_ids = _ids(builder, "a red circle###")
    pieces = ["<Img><ImageHere></Img> a<ImageHere>b", answer_ids, " next"]
    layout = builder.layouts([pieces], [[first, second]])[0]
    pad, bos = builder.tokenizer.pad_token_id, builder.tokenizer.bos_token_id
    text = [_ids(builder, t) for t in ("<Img>", "</Img> a", "b", " next")]
    assert layout.ids == [bos, *text[0], pad, pad, *text[1], pad, pad, pad, *text[2], *answer_ids, *text[3]]
    assert sum(layout.is_image) == 5 and layout.labels == [IGNORE_INDEX] * len(layout)
    embeds = builder.embed([layout], "cpu").inputs_embeds[0]
    image_rows = embeds[torch.tensor(layout.is_image)]
    torch.testing.assert_close(image_rows, torch.cat([first[0], second[0]]))


def test_left_padding_and_dropping_the_oldest_positions(builder, tiny_model):
    width = tiny_model.llama_model.config.hidden_size
    image = _images(1, 3, width)
    short, long = builder.layouts(
        [["<ImageHere> hi"], ["a long prompt before <ImageHere> and after it"]], [[image]] * 2
    )
    batch = builder.embed([short, long], "cpu", padding_side="left")
    n = len(long) - len(short)
    assert batch.attention_mask[0].tolist() == [0] * n + [1] * len(short)
    torch.testing.assert_close(batch.inputs_embeds[0, n:], builder.embed([short], "cpu").inputs_embeds[0])
    # dropping positions that hold part of an image keeps the rest of that image in place
    cut = long.drop_first(long.is_image.index(True) + 1)
    assert sum(cut.is_image) == 2 and cut.images.shape[0] == 2
    full = builder.embed([long], "cpu").inputs_embeds[0]
    torch.testing.assert_close(builder.embed([cut], "cpu").inputs_embeds[0], full[len(long) - len(cut) :])


def test_placeholders_must_match_images(builder, tiny_model):
    image = _images(1, 2, tiny_model.llama_model.config.hidden_size)
    with pytest.raises(ValueError, match="sequence 0: the prompt has 2 image placeholders"):
        builder.layouts([["<ImageHere> and <ImageHere>"]], [[image]])
    with pytest.raises(ValueError, match="1 image placeholders .* 0 images"):
        builder.layouts([["<ImageHere>"]], [[]])
