"""LLaMA's sentencepiece tokenizer, tokenizing as the published MiniGPT-4 did.

The published code ran ``LlamaTokenizer`` of transformers 4.28: a Python tokenizer over
``sentencepiece.SentencePieceProcessor`` in what later versions call *legacy* mode. A text is cut at the special
token strings ``<s>``, ``</s>`` and ``<unk>``; each special string becomes its id, and each piece of plain text in
between is encoded by sentencepiece on its own (so it gets sentencepiece's dummy-prefix ``▁``, also right after a
special token and before text that already starts with a space). Any other string, the pad string ``$$``
included, is plain text.

transformers 5's ``LlamaTokenizer`` is a ``tokenizers`` pipeline in non-legacy mode: it adds no ``▁`` after a
special token, one ``▁`` fewer before text that starts with whitespace, and treats sentencepiece's user-defined
symbols as special tokens. The LLaMA-2 chat prompt (``<s>[INST] ...``) and answers holding such text then get
other ids than the published model was trained and evaluated with; :class:`SentencePieceLlamaTokenizer` gives the
published ids.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from transformers.tokenization_utils_sentencepiece import SentencePieceBackend

SPECIAL_TOKENS = ("<unk>", "<s>", "</s>")
"""The strings the published tokenizer turned into their ids wherever they appear in a text."""


class SentencePieceLlamaTokenizer(SentencePieceBackend):
    """LLaMA's ``tokenizer.model`` with the published (legacy, slow) tokenization and decoding.

    Args:
        vocab_file: the sentencepiece ``tokenizer.model``.
        add_bos_token: prepend ``<s>`` when called with ``add_special_tokens=True`` (as LLaMA's tokenizer does).
        kwargs: passed to transformers' ``SentencePieceBackend`` (e.g. ``pad_token``).
    """

    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, vocab_file: str, add_bos_token: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("unk_token", "<unk>")
        kwargs.setdefault("bos_token", "<s>")
        kwargs.setdefault("eos_token", "</s>")
        kwargs.setdefault("clean_up_tokenization_spaces", False)
        self.add_bos_token = add_bos_token
        self._whole = set(SPECIAL_TOKENS)
        self._special_split = _splitter(self._whole)
        super().__init__(vocab_file=vocab_file, legacy=True, **kwargs)

    def add_rows(self, added: dict[int, str]) -> None:
        """Tokens of rows past the sentencepiece vocabulary (Vicuna v0's ``[PAD]`` is row 32000), by id; like the
        published tokenizer, each is cut out of a text whole, wherever it appears."""
        for token_id, content in sorted(added.items()):
            if content in self._whole:
                continue
            if token_id != len(self):
                raise ValueError(
                    f"added token {content!r} has id {token_id}, but the next free id is {len(self)}: the ids of "
                    "added tokens must follow the sentencepiece vocabulary without gaps"
                )
            self.add_tokens([content], special_tokens=True)
            self._whole.add(content)
        self._special_split = _splitter(self._whole)

    @classmethod
    def from_folder(cls, folder: str, **kwargs: Any) -> SentencePieceLlamaTokenizer:
        """The tokenizer of a Hugging Face LLaMA folder (its ``tokenizer.model``)."""
        path = os.path.join(folder, "tokenizer.model")
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{folder} has no tokenizer.model: a LLaMA / Vicuna folder holds the sentencepiece model next to "
                "config.json and the weights"
            )
        tokenizer = cls(path, **kwargs)
        tokenizer.add_rows(_added_tokens(folder, tokenizer.sp_model.get_piece_size()))
        return tokenizer

    # text -> pieces ---------------------------------------------------------------------------------------
    def tokenize(self, text: str, **kwargs: Any) -> list[str]:
        """Pieces of ``text``: special token strings as they are, each plain-text run through sentencepiece."""
        pieces: list[str] = []
        for part in self._special_split.split(text):
            if part in self._whole:
                pieces.append(part)
            elif part:
                pieces.extend(self.sp_model.encode(part, out_type=str))
        return pieces

    def build_inputs_with_special_tokens(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        bos = [self.bos_token_id] if self.add_bos_token else []
        return bos + token_ids_0 + (bos + token_ids_1 if token_ids_1 is not None else [])

    def get_special_tokens_mask(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None, already_has_special_tokens: bool = False
    ) -> list[int]:
        if already_has_special_tokens:
            specials = set(self.all_special_ids)
            return [int(i in specials) for i in token_ids_0 + (token_ids_1 or [])]
        bos = [1] if self.add_bos_token else []
        second = bos + [0] * len(token_ids_1) if token_ids_1 is not None else []
        return bos + [0] * len(token_ids_0) + second

    # ids -> text ------------------------------------------------------------------------------------------
    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """Plain pieces decoded by sentencepiece (byte-fallback pieces become their bytes), special ones verbatim."""
        out, run = [], []
        for token in tokens:
            if token in self.all_special_tokens:
                out.append(self.sp_model.decode_pieces(run))
                out.append(token)
                run = []
            else:
                run.append(token)
        out.append(self.sp_model.decode_pieces(run))
        return "".join(out)

    def _decode(
        self,
        token_ids: int | list[int],
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        **kwargs: Any,
    ) -> str:
        ids = [token_ids] if isinstance(token_ids, int) else list(token_ids)
        tokens = self.convert_ids_to_tokens(ids, skip_special_tokens=skip_special_tokens)
        return self.convert_tokens_to_string(tokens)


def _splitter(tokens: set[str]) -> re.Pattern[str]:
    """Cuts a text at ``tokens`` (longest first), keeping them as parts."""
    return re.compile("(" + "|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True)) + ")")


def _added_tokens(folder: str, first_id: int) -> dict[int, str]:
    """The added tokens a Hugging Face tokenizer folder declares with ids from ``first_id`` on: from
    ``tokenizer_config.json``'s ``added_tokens_decoder``, ``tokenizer.json``'s ``added_tokens`` and
    ``added_tokens.json`` (``{content: id}``)."""
    added: dict[int, str] = {}
    config = os.path.join(folder, "tokenizer_config.json")
    if os.path.isfile(config):
        with open(config, encoding="utf-8") as f:
            decoder = json.load(f).get("added_tokens_decoder") or {}
        added.update({int(i): entry["content"] for i, entry in decoder.items()})
    fast = os.path.join(folder, "tokenizer.json")
    if os.path.isfile(fast):
        with open(fast, encoding="utf-8") as f:
            added.update({int(entry["id"]): entry["content"] for entry in json.load(f).get("added_tokens") or []})
    extra = os.path.join(folder, "added_tokens.json")
    if os.path.isfile(extra):
        with open(extra, encoding="utf-8") as f:
            added.update({int(i): content for content, i in json.load(f).items()})
    return {i: content for i, content in added.items() if i >= first_id}
