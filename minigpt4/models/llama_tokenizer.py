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
        self._special_split = re.compile("(" + "|".join(re.escape(s) for s in SPECIAL_TOKENS) + ")")
        super().__init__(vocab_file=vocab_file, legacy=True, **kwargs)

    @classmethod
    def from_folder(cls, folder: str, **kwargs: Any) -> SentencePieceLlamaTokenizer:
        """The tokenizer of a Hugging Face LLaMA folder (its ``tokenizer.model``)."""
        path = os.path.join(folder, "tokenizer.model")
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{folder} has no tokenizer.model: a LLaMA / Vicuna folder holds the sentencepiece model next to "
                "config.json and the weights"
            )
        return cls(path, **kwargs)

    # text -> pieces ---------------------------------------------------------------------------------------
    def tokenize(self, text: str, **kwargs: Any) -> list[str]:
        """Pieces of ``text``: special token strings as they are, each plain-text run through sentencepiece."""
        pieces: list[str] = []
        for part in self._special_split.split(text):
            if part in SPECIAL_TOKENS:
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
