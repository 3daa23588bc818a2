"""The :class:`Chat` wrapper that talks to a MiniGPT-4 model about images.

The chat templates (:class:`Conversation`, ``CONV_VISION_*`` and the registered names that ``model.conv_template``
chooses from) live in :mod:`minigpt4.conversation.templates` and are importable from here as well.

:class:`Chat` turns a conversation and its images into input embeddings (the prompt is split on
``<ImageHere>``, every text segment is tokenized without special tokens, ``bos`` is prepended once, and the
image embeddings are spliced in), generates with the language model and cuts the answer at the template's
stop strings (``###``) or the end-of-sequence token. Later turns of a conversation reuse the key/value cache of
the earlier context (:class:`PrefixCache`), so only the new tokens are run through the model.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import torch
from PIL import Image
from torch import Tensor
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from minigpt4.common.constants import IMAGE_END, IMAGE_PLACEHOLDER
from minigpt4.conversation.generation import GenerationConfig, expected_warnings_silenced
from minigpt4.conversation.templates import (  # noqa: F401 (the templates are part of this module's interface)
    CONV_TEMPLATES,
    IMAGE_MESSAGE,
    AnswerIds,
    CONV_VISION_LLama2,
    CONV_VISION_Qwen2,
    CONV_VISION_Vicuna0,
    Conversation,
    SeparatorStyle,
    get_conv_template,
    template_for,
)
from minigpt4.models.sequence_builder import Layout, SequenceBuilder

logger = logging.getLogger(__name__)

ImageInput = str | os.PathLike | Image.Image | Tensor
"""What :meth:`Chat.upload_img` accepts: a file path, a PIL image, or a preprocessed ``[3, H, W]`` tensor."""


# ----------------------------------------------------------------------------------------------------------
# generation helpers
# ----------------------------------------------------------------------------------------------------------


class StopOnStrings(StoppingCriteria):
    """Stops each sequence of a batch once its generated text contains one of ``stop_strings``.

    Works on text, so it does not depend on how the tokenizer splits the stop string. ``input_ids`` are the
    generated tokens only (generation starts from ``inputs_embeds``); the last ``window`` tokens are decoded.
    """

    def __init__(self, tokenizer: Any, stop_strings: Sequence[str], window: int = 16) -> None:
        self.tokenizer = tokenizer
        self.stop_strings = [s for s in stop_strings if s]
        self.window = window

    def __call__(self, input_ids: Tensor, scores: Tensor | None = None, **kwargs: Any) -> Tensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if not self.stop_strings or input_ids.shape[1] == 0:
            return done
        tails = self.tokenizer.batch_decode(input_ids[:, -self.window :], skip_special_tokens=True)
        for i, tail in enumerate(tails):
            done[i] = any(stop in tail for stop in self.stop_strings)
        return done


def cut_at_stop(text: str, stop_strings: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the first stop string, and whether one was found."""
    cut = min((text.find(s) for s in stop_strings if s and s in text), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def _held_back(text: str, stop_strings: Sequence[str]) -> int:
    """Length of the longest suffix of ``text`` that could be the start of a stop string."""
    best = 0
    for stop in stop_strings:
        for n in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:n]):
                best = max(best, n)
                break
    return best


def crop_cache(cache: Any, keep: int) -> None:
    """Drop every cached position after the first ``keep``."""
    remove = cache.get_seq_length() - keep
    if remove > 0:
        cache.crop(-remove)


@dataclasses.dataclass
class PrefixCache:
    """Keys/values of a conversation's context and the input embeddings they were computed from.

    A later turn whose embeddings start with the same vectors reuses the cached positions and only runs the
    new ones through the model.
    """

    embeds: Tensor  # [1, L, D]
    past_key_values: Any  # a transformers Cache holding L positions

    def common_prefix(self, embeds: Tensor) -> int:
        """How many leading positions of ``embeds`` [1, T, D] equal the cached ones (at most T - 1)."""
        n = min(self.embeds.shape[1], embeds.shape[1] - 1)
        if n <= 0 or self.embeds.shape[-1] != embeds.shape[-1]:
            return 0
        same = (self.embeds[0, :n] == embeds[0, :n].to(self.embeds)).all(-1)
        mismatch = (~same).nonzero()
        return int(mismatch[0, 0]) if len(mismatch) else n


class _TokenStreamer(BaseStreamer):
    """Passes generated token ids from ``generate`` (running in a thread) to the consumer through a queue."""

    def __init__(self) -> None:
        self.queue: queue.Queue[Tensor | None] = queue.Queue()

    def put(self, value: Tensor) -> None:
        if value.dim() > 1:  # the prompt ids [B, T] (empty when starting from embeddings); new tokens are [B]
            return
        self.queue.put(value.reshape(-1).cpu())

    def end(self) -> None:
        self.queue.put(None)


class Answer(NamedTuple):
    """One answer: the text (stop string removed), the generated token ids, and whether old context was cut."""

    text: str
    tokens: Tensor
    truncated: bool


class _Cancelled(StoppingCriteria):
    """Stops every sequence once ``event`` is set (an answer whose reader went away)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: Tensor, scores: Tensor | None = None, **kwargs: Any) -> Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def _before_question(message: str) -> str | None:
    """A user message as it was before :meth:`Chat.ask` added a question to it; None when ``ask`` appended it.

    ``ask`` joins a question to a message ending with an image (``...</Img>``) and never lets a question hold an
    image placeholder, so the image part ends at the first ``</Img>`` after the last placeholder.
    """
    if IMAGE_PLACEHOLDER not in message:
        return None
    end = message.find(IMAGE_END, message.rfind(IMAGE_PLACEHOLDER))
    return message if end < 0 else message[: end + len(IMAGE_END)]


class _Turn:
    """One answer being generated for ``conv``, and what is needed to undo it if it is cancelled.

    ``kept`` is how many positions of the earlier key/value cache generation started from (the cache object is
    cropped to them and extended in place); undoing crops it back and restores the earlier messages and ids.
    """

    def __init__(self, conv: Conversation) -> None:
        self.conv = conv
        self.messages = [list(m) for m in conv.messages]
        self.kv_cache = conv.kv_cache
        self.answer_ids = dict(conv.answer_ids)
        self.kept = 0
        self.cancel = threading.Event()
        self.closed = False  # finished or undone

    def finish(self) -> None:
        self.closed = True

    def undo(self, drop_question: bool = True) -> None:
        """Leave the conversation as it was before the question (messages, key/value cache, answer ids), or with
        ``drop_question=False`` as it was before the answer was asked for."""
        if self.closed:
            return
        self.closed = True
        messages = [list(m) for m in self.messages]
        conv = self.conv
        if drop_question and messages and messages[-1][0] == conv.roles[0] and messages[-1][1]:
            before = _before_question(messages[-1][1])
            if before is None:
                messages.pop()
            else:
                messages[-1][1] = before
        conv.messages[:] = messages
        conv.answer_ids = self.answer_ids
        old = self.kv_cache
        if old is not None and self.kept:  # generation extended the earlier cache: crop it back
            crop_cache(old.past_key_values, self.kept)
            if self.kept < old.embeds.shape[1]:
                old = PrefixCache(old.embeds[:, : self.kept], old.past_key_values)
        conv.kv_cache = old


class _Outcome:
    """The final text and token ids of a streamed answer, once known."""

    text: str | None = None
    tokens: Tensor | None = None


class AnswerStream:
    """An answer being generated: iterate to get text pieces as they come; ``text`` holds the final answer.

    ``truncated`` is known before the first piece: it says that the oldest context was dropped to fit
    ``max_length``. Closing the stream before the answer is complete (:meth:`close`, leaving a ``with`` block,
    or dropping the stream or its iterator) cancels it: generation stops, and the conversation is left as it
    was before the question (messages, key/value cache and kept answer ids).
    """

    def __init__(self, pieces: Iterator[str], outcome: _Outcome, turn: _Turn, truncated: bool) -> None:
        self.truncated = truncated
        self._pieces = pieces
        self._outcome = outcome
        self._turn = turn

    @property
    def text(self) -> str | None:
        return self._outcome.text

    @property
    def tokens(self) -> Tensor | None:
        return self._outcome.tokens

    def __iter__(self) -> Iterator[str]:
        return self._pieces

    def close(self) -> None:
        """Cancel the answer if it is not complete (nothing happens after it is)."""
        self._pieces.close()  # a started generation stops and undoes its turn (see Chat._stream_pieces)
        self._turn.undo()  # one that never started

    def __enter__(self) -> AnswerStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------------------
# Chat
# ----------------------------------------------------------------------------------------------------------


class Chat:
    """Chat with a MiniGPT-4 model about images.

    Args:
        model: a :class:`minigpt4.models.mini_gpt4.MiniGPT4` (anything with ``encode_img``, ``embed_tokens``,
            ``llama_model``, ``llama_tokenizer`` and ``device``), in eval mode.
        vis_processor: maps a PIL image to a ``[3, H, W]`` tensor (the eval image processor).
        device: where images go.
        reuse_cache: keep each conversation's key/value cache between turns.
        keep_answer_ids: feed earlier answers back as the token ids the model generated. With False, the
            published behaviour, the whole prompt text is re-tokenized at every turn; its tokens can differ from
            the generated ones (at the space after ``Assistant:``), which also stops the cache from matching
            beyond the first answer.
        generation: the decoding options answers use unless told otherwise (default: :class:`GenerationConfig`,
            the published demo's).
    """

    def __init__(
        self,
        model: Any,
        vis_processor: Callable[[Image.Image], Tensor],
        device: Any = "cuda:0",
        reuse_cache: bool = True,
        keep_answer_ids: bool = True,
        generation: GenerationConfig | None = None,
    ) -> None:
        self.model = model
        self.vis_processor = vis_processor
        self.device = torch.device(device)
        self.reuse_cache = reuse_cache
        self.keep_answer_ids = keep_answer_ids
        self.generation = generation or GenerationConfig()
        self.tokenizer = model.llama_tokenizer
        self.sequences = SequenceBuilder(model.llama_tokenizer, model.embed_tokens)

    # images -----------------------------------------------------------------------------------------------
    def load_image(self, image: ImageInput) -> Tensor:
        """A preprocessed ``[3, H, W]`` image from a path, a PIL image or a tensor."""
        if isinstance(image, Tensor):
            return image[0] if image.dim() == 4 else image
        if isinstance(image, str | os.PathLike):
            with Image.open(image) as raw:
                image = raw.convert("RGB")
        elif isinstance(image, Image.Image):
            image = image.convert("RGB")
        else:
            raise TypeError(f"unsupported image type {type(image).__name__}: give a path, a PIL image or a tensor")
        return self.vis_processor(image)

    @torch.no_grad()
    def encode_images(self, images: Sequence[ImageInput]) -> Tensor:
        """Image embeddings ``[B, N, D_llm]`` for a batch of images."""
        pixels = torch.stack([self.load_image(image) for image in images]).to(self.device)  # [B, 3, H, W]
        with self.model.maybe_autocast():
            embeds, _ = self.model.encode_img(pixels)
        return embeds

    def upload_img(self, image: ImageInput, conv: Conversation, img_list: list[Tensor]) -> str:
        """Encode ``image``, add it to ``img_list`` and its message (``<Img><ImageHere></Img>``) to ``conv``."""
        img_list.append(self.encode_images([image]))  # [1, N, D]
        conv.append_message(conv.roles[0], IMAGE_MESSAGE)
        return "Received."

    # questions --------------------------------------------------------------------------------------------
    def ask(self, text: str, conv: Conversation) -> None:
        """Add a user question; right after an image it joins the image message (separated by a space).

        The image placeholder is reserved for uploaded images: typed into a question it is removed.
        """
        if IMAGE_PLACEHOLDER in text:
            logger.warning("removing %s from a question: it stands for an uploaded image", IMAGE_PLACEHOLDER)
            text = text.replace(IMAGE_PLACEHOLDER, "")
        if conv.messages and conv.messages[-1][0] == conv.roles[0] and (conv.messages[-1][1] or "").endswith(IMAGE_END):
            conv.messages[-1][1] = " ".join([conv.messages[-1][1], text])
        else:
            conv.append_message(conv.roles[0], text)

    # embeddings -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def get_context_emb(self, prompt: str, img_list: Sequence[Tensor]) -> Tensor:
        """Input embeddings ``[1, T, D]``: ``bos``, then text segments interleaved with the image embeddings."""
        return self.sequences.prompt([prompt], img_list, self.model.device)

    def context_layout(self, conv: Conversation, img_list: Sequence[Tensor]) -> Layout:
        """The layout of ``conv``'s prompt, with earlier answers as their generated ids when they are kept."""
        pieces = conv.prompt_pieces() if self.keep_answer_ids and conv.answer_ids else [conv.get_prompt()]
        return self.sequences.layouts([pieces], [img_list])[0]

    @torch.no_grad()
    def context_emb(self, conv: Conversation, img_list: Sequence[Tensor]) -> Tensor:
        """The embeddings ``[1, T, D]`` of :meth:`context_layout`."""
        return self.sequences.embed([self.context_layout(conv, img_list)], self.model.device).inputs_embeds

    def _keep_ids(self, conv: Conversation, tokens: Tensor) -> None:
        """Remember the generated ids of the answer just added to ``conv`` (if they decode to exactly it)."""
        index = len(conv.messages) - 1
        conv.answer_ids.pop(index, None)
        text = conv.messages[index][1]
        if not self.keep_answer_ids or not text:
            return
        ids = tokens.tolist()
        ends = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id}
        while ids and ids[-1] in ends:
            ids.pop()
        stops = conv.stop_strings

        def stopped(k: int) -> bool:
            return cut_at_stop(self.tokenizer.decode(ids[:k], skip_special_tokens=True), stops)[1]

        with_sep = bool(stops) and stopped(len(ids))
        if with_sep:  # the shortest prefix that holds the stop string
            low, high = 1, len(ids)
            while low < high:
                mid = (low + high) // 2
                low, high = (low, mid) if stopped(mid) else (mid + 1, high)
            ids = ids[:low]
        if any(i in ends for i in ids):
            return
        decoded = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
        sep = stops[0] if with_sep else ""
        if decoded == text + sep:
            conv.answer_ids[index] = AnswerIds(text, tuple(ids), with_sep)

    def _prepare(self, conv: Conversation, img_list: Sequence[Tensor], config: GenerationConfig) -> tuple[Layout, bool]:
        """Add the empty assistant turn and lay out the context; drop its oldest positions beyond ``max_length``."""
        conv.append_message(conv.roles[1], None)
        try:
            layout = self.context_layout(conv, img_list)
        except Exception:
            conv.messages.pop()
            raise
        overflow = len(layout) + config.max_new_tokens - config.max_length
        if overflow > 0:
            logger.warning(
                "The conversation (%d tokens + %d new) exceeds max_length=%d: the model will not see the oldest "
                "%d tokens.",
                len(layout),
                config.max_new_tokens,
                config.max_length,
                overflow,
            )
        return layout.drop_first(overflow), overflow > 0

    def _generation_kwargs(
        self, conv: Conversation, config: GenerationConfig, extra: dict[str, Any], cancel: threading.Event
    ) -> dict[str, Any]:
        criteria = StoppingCriteriaList([StopOnStrings(self.tokenizer, conv.stop_strings), _Cancelled(cancel)])
        return dict(
            stopping_criteria=criteria,
            eos_token_id=self.tokenizer.eos_token_id,
            pad_token_id=self.tokenizer.pad_token_id,
            **config.generate_kwargs(),
            **extra,
        )

    def _decode(self, tokens: Tensor, conv: Conversation) -> str:
        """The answer text: up to the stop string, without the image placeholder (it would stand for an image)."""
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        return cut_at_stop(text, conv.stop_strings)[0].replace(IMAGE_PLACEHOLDER, "").strip()

    # generation -------------------------------------------------------------------------------------------
    def _start_cache(self, turn: _Turn, embs: Tensor, num_beams: int, truncated: bool) -> Any:
        """The cache to start from (cropped to the positions shared with ``embs``, counted in ``turn.kept``)."""
        conv = turn.conv
        cached, conv.kv_cache = conv.kv_cache, None
        if not self.reuse_cache or cached is None or num_beams != 1 or truncated:
            return None
        keep = cached.common_prefix(embs)
        if keep == 0:
            return None
        crop_cache(cached.past_key_values, keep)
        turn.kept = keep
        return cached.past_key_values

    def _store_cache(self, conv: Conversation, embs: Tensor, output: Any, num_beams: int, truncated: bool) -> None:
        cache = getattr(output, "past_key_values", None)
        if not self.reuse_cache or cache is None or num_beams != 1 or truncated:
            return
        generated = output.sequences[:, :-1]  # the last token was sampled but never fed back
        seen = torch.cat([embs, self.model.embed_tokens(generated).to(embs)], dim=1)
        keep = min(cache.get_seq_length(), seen.shape[1])
        crop_cache(cache, keep)
        conv.kv_cache = PrefixCache(seen[:, :keep], cache)

    @torch.no_grad()
    def _generate(self, turn: _Turn, embs: Tensor, truncated: bool, streamer: Any = None, **kwargs: Any) -> Any:
        num_beams = kwargs.get("num_beams", 1)
        with expected_warnings_silenced():
            past = self._start_cache(turn, embs, num_beams, truncated)
            with self.model.maybe_autocast():
                output = self.model.llama_model.generate(
                    inputs_embeds=embs,
                    attention_mask=torch.ones(embs.shape[:2], dtype=torch.long, device=embs.device),
                    past_key_values=past,
                    return_dict_in_generate=True,
                    streamer=streamer,
                    **kwargs,
                )
            if not turn.cancel.is_set():
                self._store_cache(turn.conv, embs, output, num_beams, truncated)
        return output

    def answer(
        self,
        conv: Conversation,
        img_list: Sequence[Tensor],
        stream: bool = False,
        config: GenerationConfig | None = None,
        **options: Any,
    ) -> Answer | AnswerStream:
        """Generate the assistant's answer to the conversation so far and add it to ``conv``.

        Returns an :class:`Answer` (``answer[0]`` is the text), or with ``stream=True`` an :class:`AnswerStream`
        that yields the text piece by piece. Decoding follows ``config`` (default: this chat's
        :attr:`generation`); options named like its fields override it (``max_new_tokens=...``,
        ``temperature=...``, ``do_sample=False`` for greedy or beam search, ``max_length=...``), any other option
        goes to ``generate`` (e.g. ``min_new_tokens``). When the context plus ``max_new_tokens`` exceeds
        ``max_length``, the oldest tokens are dropped with a warning and ``truncated`` is set.
        """
        config, extra = (config or self.generation).updated(**options)
        turn = _Turn(conv)
        layout, truncated = self._prepare(conv, img_list, config)
        embs = self.sequences.embed([layout], self.model.device).inputs_embeds  # [1, T, D]
        kwargs = self._generation_kwargs(conv, config, extra, turn.cancel)
        if stream:
            outcome = _Outcome()
            pieces = self._stream_pieces(outcome, turn, embs, truncated, kwargs)
            return AnswerStream(pieces, outcome, turn, truncated)
        try:
            output = self._generate(turn, embs, truncated, **kwargs)
        except BaseException:
            turn.undo(drop_question=False)
            raise
        tokens = output.sequences[0]
        text = self._decode(tokens, conv)
        conv.messages[-1][1] = text
        self._keep_ids(conv, tokens)
        turn.finish()
        return Answer(text, tokens, truncated)

    def stream_answer(self, conv: Conversation, img_list: Sequence[Tensor], **kwargs: Any) -> AnswerStream:
        """``answer(..., stream=True)``."""
        return self.answer(conv, img_list, stream=True, **kwargs)  # type: ignore[return-value]

    def _stream_pieces(
        self, outcome: _Outcome, turn: _Turn, embs: Tensor, truncated: bool, kwargs: dict[str, Any]
    ) -> Iterator[str]:
        """Run ``generate`` in a thread and yield the visible text as it grows (the stop string never shows).

        If the reader stops (the generator is closed), generation is cancelled and the turn undone.
        """
        conv = turn.conv
        streamer = _TokenStreamer() if kwargs.get("num_beams", 1) == 1 else None
        result: dict[str, Any] = {}

        def work() -> None:
            try:
                result["output"] = self._generate(turn, embs, truncated, streamer=streamer, **kwargs)
            except BaseException as err:  # re-raised in the consumer
                result["error"] = err
            finally:
                if streamer is not None:
                    streamer.end()

        thread = threading.Thread(target=work, name="minigpt4-answer", daemon=True)
        thread.start()
        try:
            shown = yield from self._visible_pieces(streamer, conv.stop_strings)
            thread.join()
        except GeneratorExit:
            turn.cancel.set()
            thread.join()
            turn.undo()
            raise
        if "error" in result:
            turn.undo(drop_question=False)
            raise result["error"]
        tokens = result["output"].sequences[0]
        final = self._decode(tokens, conv)
        if not final.startswith(shown):
            logger.warning("streamed text diverged from the decoded answer; the conversation keeps the decoded one")
        elif len(final) > len(shown):
            try:
                yield final[len(shown) :]
            except GeneratorExit:
                turn.undo()
                raise
        conv.messages[-1][1] = final
        self._keep_ids(conv, tokens)
        turn.finish()
        outcome.text, outcome.tokens = final, tokens

    def _visible_pieces(self, streamer: _TokenStreamer | None, stops: Sequence[str]) -> Iterator[str]:
        """Yield the new visible text as token ids arrive; return all the text shown."""
        shown = ""
        ids: list[int] = []
        while streamer is not None:
            piece = streamer.queue.get()
            if piece is None:
                break
            ids += piece.tolist()
            text, stopped = cut_at_stop(self.tokenizer.decode(ids, skip_special_tokens=True), stops)
            text = text.replace(IMAGE_PLACEHOLDER, "")
            if stopped:
                visible = text.strip()
            else:  # hold back a possible start of the stop string and the last, maybe unfinished, word
                visible = text[: len(text) - _held_back(text, stops)]
                visible = visible[: max(visible.rfind(" "), visible.rfind("\n"), 0)].strip()
            if not visible.startswith(shown):
                continue  # byte-level pieces decoded differently once more bytes came: wait
            if len(visible) > len(shown):
                yield visible[len(shown) :]
                shown = visible
        return shown

    # batches ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def answer_batch(
        self,
        convs: Sequence[Conversation],
        img_lists: Sequence[Sequence[Tensor]],
        config: GenerationConfig | None = None,
        **options: Any,
    ) -> list[str]:
        """Answer several conversations in one left-padded batch; each sequence stops on its own.

        Decoding options as in :meth:`answer`. The answers are added to their conversations and returned. All
        conversations must use the same template.
        """
        if len(convs) != len(img_lists):
            raise ValueError(f"{len(convs)} conversations but {len(img_lists)} image lists")
        if len({tuple(c.stop_strings) for c in convs}) > 1:
            raise ValueError("a batch must use one chat template")
        config, extra = (config or self.generation).updated(**options)
        layouts = [self._prepare(conv, imgs, config)[0] for conv, imgs in zip(convs, img_lists)]
        batch = self.sequences.embed(layouts, self.model.device, padding_side="left")
        kwargs = self._generation_kwargs(convs[0], config, extra, threading.Event())
        with expected_warnings_silenced(), self.model.maybe_autocast():
            output = self.model.llama_model.generate(
                inputs_embeds=batch.inputs_embeds,
                attention_mask=batch.attention_mask,
                return_dict_in_generate=True,
                **kwargs,
            )
        answers = []
        for conv, tokens in zip(convs, output.sequences):
            conv.kv_cache = None
            conv.messages[-1][1] = self._decode(tokens, conv)
            self._keep_ids(conv, tokens)
            answers.append(conv.messages[-1][1])
        return answers
