"""Chat templates and generation invariants of ``minigpt4.conversation.conversation``."""

from __future__ import annotations

import logging
import threading
import warnings

import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from minigpt4.conversation.conversation import (
    Chat,
    CONV_VISION_LLama2,
    CONV_VISION_Vicuna0,
    Conversation,
    SeparatorStyle,
    StopOnStrings,
    cut_at_stop,
)
from minigpt4.conversation.generation import EXPECTED_LOGGER

SYSTEM = (
    "Give the following image: <Img>ImageContent</Img>. You will be able to see the image once I provide it "
    "to you. Please answer my questions."
)
GREEDY = dict(max_new_tokens=10, do_sample=False, repetition_penalty=1.0)


# ----------------------------------------------------------------------------------------------------------
# templates
# ----------------------------------------------------------------------------------------------------------


def _first_turn(template: Conversation, chat: Chat, question: str = "What is this?") -> Conversation:
    conv = template.copy()
    conv.append_message(conv.roles[0], "<Img><ImageHere></Img>")
    chat.ask(question, conv)
    conv.append_message(conv.roles[1], None)
    return conv


def test_vicuna0_prompt_is_the_published_one(chat):
    conv = _first_turn(CONV_VISION_Vicuna0, chat)
    assert conv.get_prompt() == SYSTEM + "###Human: <Img><ImageHere></Img> What is this?###Assistant: "


def test_llama2_prompt(chat):
    conv = _first_turn(CONV_VISION_LLama2, chat)
    assert conv.get_prompt() == SYSTEM + "<s>[INST] <Img><ImageHere></Img> What is this? [/INST] "


def test_second_turn_prompt_and_template_untouched(chat):
    conv = _first_turn(CONV_VISION_Vicuna0, chat)
    conv.messages[-1][1] = "A red square."
    chat.ask("Where?", conv)
    conv.append_message(conv.roles[1], None)
    assert conv.get_prompt() == (
        SYSTEM
        + "###Human: <Img><ImageHere></Img> What is this?###Assistant: A red square.###Human: Where?###Assistant: "
    )
    assert CONV_VISION_Vicuna0.messages == []
    assert conv.to_gradio_chatbot() == [
        {"role": "user", "content": "What is this?"},
        {"role": "assistant", "content": "A red square."},
        {"role": "user", "content": "Where?"},
    ]


def test_separator_style_two():
    conv = Conversation("S", ("U: ", "A: "), [], sep_style=SeparatorStyle.TWO, sep=" ", sep2="</s>")
    conv.append_message("U: ", "hi")
    conv.append_message("A: ", "hello")
    conv.append_message("U: ", "bye")
    conv.append_message("A: ", None)
    assert conv.get_prompt() == "S U: hi A: hello</s>U: bye A: "
    assert conv.stop_strings == ["</s>"]


def test_cut_at_stop():
    assert cut_at_stop("a red###Human: x", ["###"]) == ("a red", True)
    assert cut_at_stop("a red", ["###"]) == ("a red", False)


def test_embeddings_interleave_text_and_image(chat, image):
    conv = CONV_VISION_Vicuna0.copy()
    img_list = []
    chat.upload_img(image, conv, img_list)
    chat.ask("hi", conv)
    prompt = conv.get_prompt()
    embs = chat.get_context_emb(prompt, img_list)
    before, after = prompt.split("<ImageHere>")
    tok = chat.tokenizer
    n_before = 1 + len(tok(before, add_special_tokens=False).input_ids)
    n_after = len(tok(after, add_special_tokens=False).input_ids)
    assert embs.shape[1] == n_before + img_list[0].shape[1] + n_after
    bos = chat.model.embed_tokens(torch.tensor([[tok.bos_token_id]]))
    torch.testing.assert_close(embs[:, :1], bos)
    torch.testing.assert_close(embs[:, n_before : n_before + img_list[0].shape[1]], img_list[0])
    with pytest.raises(ValueError, match="placeholders"):
        chat.get_context_emb(prompt, [])


# ----------------------------------------------------------------------------------------------------------
# generation
# ----------------------------------------------------------------------------------------------------------


def _start(chat: Chat, image, question: str = "describe the image", template=CONV_VISION_Vicuna0):
    conv, img_list = template.copy(), []
    chat.upload_img(image, conv, img_list)
    chat.ask(question, conv)
    return conv, img_list


def test_upload_accepts_path_pil_and_tensor(chat, image, tmp_path, vis_processor):
    path = tmp_path / "x.png"
    image.save(path)
    embeds = []
    for source in (str(path), path, image, vis_processor(image)):
        _, img_list = _start(chat, source)
        embeds.append(img_list[0])
    for other in embeds[1:]:
        torch.testing.assert_close(other, embeds[0])


def test_greedy_is_deterministic_and_stored(chat, image):
    conv1, imgs1 = _start(chat, image)
    conv2, imgs2 = _start(chat, image)
    a1 = chat.answer(conv1, imgs1, **GREEDY)
    a2 = chat.answer(conv2, imgs2, **GREEDY)
    assert a1.text == a2.text and a1[0] == a1.text
    assert torch.equal(a1.tokens, a2.tokens)
    assert conv1.messages[-1] == [conv1.roles[1], a1.text]
    assert "###" not in a1.text and not a1.truncated


def test_sampling_and_beams_run(chat, image):
    conv, imgs = _start(chat, image)
    torch.manual_seed(0)
    first = chat.answer(conv, imgs, max_new_tokens=6, temperature=0.7, top_p=0.9).text
    conv, imgs = _start(chat, image)
    torch.manual_seed(0)
    assert chat.answer(conv, imgs, max_new_tokens=6, temperature=0.7, top_p=0.9).text == first
    conv, imgs = _start(chat, image)
    beams = chat.answer(conv, imgs, max_new_tokens=6, num_beams=2, do_sample=False)
    assert isinstance(beams.text, str) and "###" not in beams.text


class ForceTokensAt(LogitsProcessor):
    """Row ``i`` is forced to emit ``tokens`` starting at generated step ``steps[i]`` (greedy elsewhere)."""

    def __init__(self, steps: list[int], tokens: list[int]) -> None:
        self.steps, self.tokens = steps, tokens
        self.start = None

    def __call__(self, input_ids, scores):
        if self.start is None:
            self.start = input_ids.shape[1]
        step = input_ids.shape[1] - self.start
        for row, first in enumerate(self.steps):
            k = step - first
            if 0 <= k < len(self.tokens):
                scores[row] = -float("inf")
                scores[row, self.tokens[k]] = 0.0
        return scores


def test_batch_stops_each_sequence_on_its_stop_string(chat, image):
    tok = chat.tokenizer
    hash_byte = tok.convert_tokens_to_ids("<0x23>")  # "#": the stop string spread over three tokens
    steps = [2, 5, 100]
    convs, img_lists = zip(*[_start(chat, image, q) for q in ("describe the image", "a red circle", "where is it")])
    forcing = ForceTokensAt(steps, [hash_byte] * 3)
    answers = chat.answer_batch(list(convs), list(img_lists), logits_processor=LogitsProcessorList([forcing]), **GREEDY)
    assert len(answers) == 3
    for conv, answer in zip(convs, answers):
        assert "#" not in answer and conv.messages[-1][1] == answer
    # the forced rows stopped right after the stop string, the free row ran to max_new_tokens
    for i, solo_conv in enumerate([_start(chat, image, q) for q in ("describe the image", "a red circle")]):
        solo = chat.answer(
            *solo_conv, logits_processor=LogitsProcessorList([ForceTokensAt([steps[i]], [hash_byte] * 3)]), **GREEDY
        )
        assert solo.tokens.shape[0] == steps[i] + 3
        assert solo.text == answers[i]


def test_batch_matches_single_greedy(chat, image):
    questions = ["describe the image", "is there a small blue square on the left of the image"]
    convs, img_lists = zip(*[_start(chat, image, q) for q in questions])
    batch = chat.answer_batch(list(convs), list(img_lists), **GREEDY)
    singles = [chat.answer(*_start(chat, image, q), **GREEDY).text for q in questions]
    assert batch == singles


def test_stop_on_strings_is_per_sequence(chat_tokenizer):
    ids = chat_tokenizer(["a red ###", "a red circle"], add_special_tokens=False, padding=True).input_ids
    done = StopOnStrings(chat_tokenizer, ["###"])(torch.tensor(ids), None)
    assert done.tolist() == [True, False]


def test_stream_equals_answer(chat, image):
    conv, imgs = _start(chat, image)
    expected = chat.answer(conv, imgs, **GREEDY).text
    conv, imgs = _start(chat, image)
    stream = chat.answer(conv, imgs, stream=True, **GREEDY)
    pieces = list(stream)
    assert "".join(pieces) == expected == stream.text == conv.messages[-1][1]


def test_stream_hides_the_stop_string(chat, image):
    hash_byte = chat.tokenizer.convert_tokens_to_ids("<0x23>")
    conv, imgs = _start(chat, image)
    forcing = LogitsProcessorList([ForceTokensAt([3], [hash_byte] * 3)])
    pieces = list(chat.stream_answer(conv, imgs, logits_processor=forcing, **GREEDY))
    assert all("#" not in p for p in pieces) and "".join(pieces) == conv.messages[-1][1]


def _count_fed_positions(model):
    fed = []
    hook = model.llama_model.model.register_forward_pre_hook(
        lambda mod, args, kwargs: (
            fed.append(kwargs["inputs_embeds"].shape[1]) if kwargs.get("inputs_embeds") is not None else None
        ),
        with_kwargs=True,
    )
    return fed, hook


def test_cached_turns_equal_recomputed(chat_model, image, vis_processor):
    cached = Chat(chat_model, vis_processor, device="cpu", reuse_cache=True)
    fresh = Chat(chat_model, vis_processor, device="cpu", reuse_cache=False)
    convs, answers = {}, {}
    fed, hook = _count_fed_positions(chat_model)
    try:
        for name, chat in (("cached", cached), ("fresh", fresh)):
            conv, imgs = _start(chat, image)
            answers[name] = [chat.answer(conv, imgs, **GREEDY).text]
            for question in ("where is the red circle", "and the blue square"):
                chat.ask(question, conv)
                answers[name].append(chat.answer(conv, imgs, **GREEDY).text)
            convs[name] = conv
    finally:
        hook.remove()
    assert answers["cached"] == answers["fresh"]
    assert convs["cached"].get_prompt() == convs["fresh"].get_prompt()
    # prefill lengths: the cached chat fed only the new part of turns 2 and 3
    cached_prefills, fresh_prefills = fed[:3], fed[3:]
    assert cached_prefills[0] == fresh_prefills[0]
    assert cached_prefills[1] < fresh_prefills[1] and cached_prefills[2] < fresh_prefills[2]
    assert convs["cached"].kv_cache is not None and convs["fresh"].kv_cache is None


def test_too_long_context_is_truncated_with_notice(chat, image, caplog):
    conv, imgs = _start(chat, image)
    with caplog.at_level(logging.WARNING, logger="minigpt4.conversation.conversation"):
        answer = chat.answer(conv, imgs, max_length=30, **GREEDY)
    assert answer.truncated
    assert "max_length" in caplog.text
    stream = chat.stream_answer(*_start(chat, image), max_length=30, **GREEDY)
    assert stream.truncated
    list(stream)


def test_image_placeholder_is_reserved_for_images(chat, image):
    placeholder = chat.tokenizer.convert_tokens_to_ids("<ImageHere>")
    conv, imgs = _start(chat, image, "what is <ImageHere> here")
    assert conv.messages[-1][1] == "<Img><ImageHere></Img> what is  here"
    forcing = LogitsProcessorList([ForceTokensAt([1], [placeholder])])
    assert "<ImageHere>" not in chat.answer(conv, imgs, logits_processor=forcing, **GREEDY).text
    chat.ask("again", conv)
    forcing = LogitsProcessorList([ForceTokensAt([1], [placeholder])])
    stream = chat.answer(conv, imgs, stream=True, logits_processor=forcing, **GREEDY)
    assert "<ImageHere>" not in "".join(stream) and "<ImageHere>" not in stream.text
    assert conv.get_prompt().count("<ImageHere>") == 1


def test_llama2_template_answers_until_eos(chat, image):
    conv, imgs = _start(chat, image, template=CONV_VISION_LLama2)
    assert conv.stop_strings == ["###"]  # as published: "###" or eos
    eos = chat.tokenizer.eos_token_id
    forcing = LogitsProcessorList([ForceTokensAt([4], [eos])])
    answer = chat.answer(conv, imgs, logits_processor=forcing, **GREEDY)
    assert answer.tokens.shape[0] == 5 and answer.tokens[-1] == eos
    chat.ask("and then?", conv)
    conv.append_message(conv.roles[1], None)
    first_turn = SYSTEM + "<s>[INST] <Img><ImageHere></Img> describe the image [/INST] "
    assert conv.get_prompt() == first_turn + answer.text + "<s>[INST] and then? [/INST] "


def test_bad_requests_leave_the_conversation_unchanged(chat, image):
    conv, imgs = _start(chat, image)
    before = [list(m) for m in conv.messages]
    with pytest.raises(ValueError, match="max_length"):
        chat.answer(conv, imgs, max_new_tokens=50, max_length=50)
    with pytest.raises(ValueError, match="placeholders"):
        chat.answer(conv, [], **GREEDY)
    assert conv.messages == before


# ----------------------------------------------------------------------------------------------------------
# earlier answers as their generated ids
# ----------------------------------------------------------------------------------------------------------


def _forced_answer(chat: Chat, conv: Conversation, imgs, text: str):
    ids = chat.tokenizer(text, add_special_tokens=False).input_ids
    forcing = LogitsProcessorList([ForceTokensAt([0], ids)])
    return chat.answer(conv, imgs, logits_processor=forcing, **dict(GREEDY, max_new_tokens=len(ids) + 3)), ids


def test_answer_ids_are_kept_and_rendered_as_the_prompt_text(chat, image):
    conv, imgs = _start(chat, image)
    answer, ids = _forced_answer(chat, conv, imgs, "there is a red circle###")
    assert answer.text == "there is a red circle"
    kept = conv.answer_ids[len(conv.messages) - 1]
    assert list(kept.ids) == ids and kept.with_sep  # the stop string was generated: it is part of the ids
    chat.ask("and the square", conv)
    conv.append_message(conv.roles[1], None)
    pieces = conv.prompt_pieces()
    assert [type(p) for p in pieces] == [str, list, str]
    text = "".join(p if isinstance(p, str) else chat.tokenizer.decode(p).strip() for p in pieces)
    assert text == conv.get_prompt()
    # the model is fed exactly what it generated, between the text before and after the answer
    embs = chat.context_emb(conv, imgs)
    tokens_before = chat.get_context_emb(pieces[0], imgs).shape[1]
    assert torch.equal(embs[0, tokens_before : tokens_before + len(ids)], chat.model.embed_tokens(torch.tensor(ids)))
    # an edited answer is rendered from its text again
    conv.messages[-3][1] = "there is a blue square"
    assert conv.prompt_pieces() == [conv.get_prompt()]


def test_answer_ids_not_kept_when_they_do_not_decode_to_the_answer(chat, image):
    placeholder = chat.tokenizer.convert_tokens_to_ids("<ImageHere>")
    conv, imgs = _start(chat, image)
    forcing = LogitsProcessorList([ForceTokensAt([1], [placeholder])])
    chat.answer(conv, imgs, logits_processor=forcing, **GREEDY)  # the placeholder is removed from the text
    assert conv.answer_ids == {}
    assert conv.prompt_pieces() == [conv.get_prompt()]


def test_published_retokenization_is_a_switch(chat_model, image, vis_processor):
    chat = Chat(chat_model, vis_processor, device="cpu", keep_answer_ids=False)
    conv, imgs = _start(chat, image)
    _forced_answer(chat, conv, imgs, "there is a red circle###")
    assert conv.answer_ids == {}
    chat.ask("and the square", conv)
    conv.append_message(conv.roles[1], None)
    assert torch.equal(chat.context_emb(conv, imgs), chat.get_context_emb(conv.get_prompt(), imgs))


def test_third_turn_prefills_only_the_new_question(chat_model, image, vis_processor):
    chat = Chat(chat_model, vis_processor, device="cpu", reuse_cache=True)
    conv, imgs = _start(chat, image)
    _forced_answer(chat, conv, imgs, "there is a red circle###")
    chat.ask("and the square", conv)
    _forced_answer(chat, conv, imgs, "it is on the left###")
    chat.ask("and the triangle", conv)
    fed, hook = _count_fed_positions(chat_model)
    try:
        chat.answer(conv, imgs, **GREEDY)
    finally:
        hook.remove()
    new_text = chat.tokenizer("Human: and the triangle###Assistant: ", add_special_tokens=False).input_ids
    # the new question, plus the last token of the previous answer (generated but never fed back)
    assert fed[0] == len(new_text) + 1


# ----------------------------------------------------------------------------------------------------------
# cancelling a streamed answer
# ----------------------------------------------------------------------------------------------------------


class HoldAt(LogitsProcessor):
    """Counts generation steps; at step ``hold`` it waits until ``gate`` is set (so a reader can leave mid-answer)."""

    def __init__(self, hold: int) -> None:
        self.hold, self.steps, self.gate = hold, 0, threading.Event()

    def __call__(self, input_ids, scores):
        self.steps += 1
        if self.steps == self.hold:
            self.gate.wait(timeout=60)
        return scores


def _long_answer(chat: Chat, hold: HoldAt) -> dict:
    """Options for an answer that would run 1000 tokens: words first (so pieces stream), no stop, no eos."""
    words = chat.tokenizer("there is a red circle on the left", add_special_tokens=False).input_ids
    stops = [[chat.tokenizer.convert_tokens_to_ids("###")], [chat.tokenizer.convert_tokens_to_ids("<0x23>")]]
    processors = LogitsProcessorList([ForceTokensAt([0], words), hold])
    return dict(
        GREEDY, max_new_tokens=1000, min_new_tokens=1000, bad_words_ids=stops, logits_processor=processors, stream=True
    )


@pytest.mark.parametrize("leave", ["close", "drop"])
def test_cancelled_stream_stops_and_leaves_the_conversation_as_before_the_question(
    chat_model, image, vis_processor, leave
):
    chat = Chat(chat_model, vis_processor, device="cpu", reuse_cache=True)
    conv, imgs = _start(chat, image)
    _forced_answer(chat, conv, imgs, "there is a red circle###")
    messages, answer_ids, cache = [list(m) for m in conv.messages], dict(conv.answer_ids), conv.kv_cache
    cached_length = cache.past_key_values.get_seq_length()
    assert answer_ids and cache is not None

    chat.ask("and the square", conv)
    hold = HoldAt(hold=12)
    threads = set(threading.enumerate())
    stream = chat.answer(conv, imgs, **_long_answer(chat, hold))
    pieces = iter(stream)
    first = next(pieces)  # the reader saw the start of the answer ...
    workers = [t for t in threading.enumerate() if t not in threads]
    assert first and workers
    threading.Timer(0.2, hold.gate.set).start()
    if leave == "close":  # ... and pressed stop
        stream.close()
    else:  # ... and went away (the page was closed): the stream is dropped
        del stream, pieces
    assert not any(t.is_alive() for t in workers)  # generation stopped: its thread is gone
    assert hold.steps < 1000
    assert conv.messages == messages and conv.answer_ids == answer_ids
    assert conv.kv_cache is cache and cache.past_key_values.get_seq_length() == cached_length

    # the conversation goes on as if the cancelled question had never been asked
    twin = Chat(chat_model, vis_processor, device="cpu", reuse_cache=False)
    twin_conv, _ = _start(twin, image)
    _forced_answer(twin, twin_conv, imgs, "there is a red circle###")
    for c, ch in ((conv, chat), (twin_conv, twin)):
        ch.ask("where is the blue square", c)
    fed, hook = _count_fed_positions(chat_model)
    try:
        assert chat.answer(conv, imgs, **GREEDY).text == twin.answer(twin_conv, imgs, **GREEDY).text
    finally:
        hook.remove()
    assert fed[0] < fed[-1]  # the cached context was reused, only the new question was fed
    assert conv.get_prompt() == twin_conv.get_prompt()


def test_stream_closed_before_it_starts_leaves_the_first_turn_unasked(chat, image):
    conv, imgs = CONV_VISION_Vicuna0.copy(), []
    chat.upload_img(image, conv, imgs)
    before = [list(m) for m in conv.messages]
    chat.ask("describe the image", conv)
    stream = chat.answer(conv, imgs, stream=True, **GREEDY)
    stream.close()
    assert conv.messages == before and conv.kv_cache is None and conv.answer_ids == {}
    chat.ask("describe the image", conv)  # the question joins the image message again
    assert chat.answer(conv, imgs, **GREEDY).text == chat.answer(*_start(chat, image), **GREEDY).text


def test_finished_stream_is_kept_when_closed(chat, image):
    conv, imgs = _start(chat, image)
    with chat.answer(conv, imgs, stream=True, **GREEDY) as stream:
        text = "".join(stream)
    assert conv.messages[-1] == [conv.roles[1], text] and stream.text == text


# ----------------------------------------------------------------------------------------------------------
# warnings
# ----------------------------------------------------------------------------------------------------------


class WarnWhileGenerating(LogitsProcessor):
    """Emits one unrelated warning and one unrelated transformers log line during generation."""

    def __call__(self, input_ids, scores):
        warnings.warn("an unrelated warning", UserWarning, stacklevel=2)
        logging.getLogger(EXPECTED_LOGGER).warning("an unrelated log line")
        return scores


def test_expected_transformers_warnings_are_silenced_others_still_show(chat_model, image, vis_processor):
    chat = Chat(chat_model, vis_processor, device="cpu", reuse_cache=True)
    conv, imgs = _start(chat, image)
    chat.answer(conv, imgs, **GREEDY)
    chat.ask("where is it", conv)  # the second turn starts from the cached context (past_key_values)
    logged: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())
    logger = logging.getLogger(EXPECTED_LOGGER)
    logger.addHandler(handler)
    logging.Logger.warning_once.cache_clear()  # transformers logs its deprecation once per process
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            options = dict(GREEDY, max_new_tokens=3, repetition_penalty=1.05)
            chat.answer(conv, imgs, logits_processor=LogitsProcessorList([WarnWhileGenerating()]), **options)
            outside = "generation is over"
            warnings.warn(outside, UserWarning, stacklevel=2)
    finally:
        logger.removeHandler(handler)
    shown = [str(w.message) for w in caught]
    assert "an unrelated warning" in shown and outside in shown
    assert not [m for m in shown if "repetition_penalty" in m or "past_key_values" in m], shown
    assert "an unrelated log line" in logged
    assert not [m for m in logged if "deprecated" in m], logged
    assert conv.kv_cache is not None  # the cache really was passed on
