"""Random-weight assets for the benchmark models, written once into a cache folder.

A benchmark needs the real code paths and the real shapes, not trained weights. For each configuration we write:

- ``llama/``: a Hugging Face ``save_pretrained`` LLaMA folder with random weights and a sentencepiece tokenizer.
  The tokenizer is a BPE model trained in well under a second on synthetic captions (a few hundred pieces,
  word-level on that language, ``$$`` and ``###`` single pieces), while the LLaMA's ``vocab_size`` is set to the
  real 32000: embedding and LM-head FLOPs and memory are those of a 32000-token vocabulary; only ids below the
  tokenizer's size ever occur, which changes no cost. Captions of 10-19 words give 10-19 caption tokens (+1 for
  ``end_sym``), as stage-1 LAION/CC captions do.
- ``eva_vit.pth`` / ``qformer.pth``: random state dicts of the model's own ViT / Q-Former modules at the
  configured size (written by building the model once without them and saving its frozen towers).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

from bench.shards import caption

TOKENIZER_SYMBOLS = ["$$", "###", "<Img>", "</Img>", "<ImageHere>", "Human", "Assistant", "[INST]", "[/INST]"]


@dataclass
class LlamaDims:
    hidden_size: int = 512
    num_hidden_layers: int = 4
    num_attention_heads: int = 8
    num_key_value_heads: int = 8
    intermediate_size: int = 1376  # 512 * 11008 / 4096, LLaMA-7B's proportion
    vocab_size: int = 32000
    max_position_embeddings: int = 2048


def captions(n: int, seed: int = 0, min_words: int = 10, max_words: int = 19) -> list[str]:
    rng = random.Random(seed)
    return [caption(rng, min_words, max_words) for _ in range(n)]


def write_tokenizer(folder: str, seed: int = 0) -> None:
    import sentencepiece as spm

    os.makedirs(folder, exist_ok=True)
    prompts = ["###Human: <Img><ImageHere></Img> Describe this image in detail. ###Assistant: "] * 50
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(captions(3000, seed) + prompts),
        model_prefix=os.path.join(folder, "tokenizer"),
        vocab_size=32000,
        hard_vocab_limit=False,  # as many pieces as the corpus supports
        model_type="bpe",
        byte_fallback=True,
        user_defined_symbols=TOKENIZER_SYMBOLS,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    os.remove(os.path.join(folder, "tokenizer.vocab"))


def write_llama(folder: str, dims: LlamaDims, seed: int = 0) -> str:
    """A random-weight LLaMA ``save_pretrained`` folder with its tokenizer; returns the folder."""
    if os.path.exists(os.path.join(folder, "config.json")):
        return folder
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer

    write_tokenizer(folder, seed)
    tok = LlamaTokenizer.from_pretrained(folder)
    tok.save_pretrained(folder)
    config = LlamaConfig(
        hidden_size=dims.hidden_size,
        num_hidden_layers=dims.num_hidden_layers,
        num_attention_heads=dims.num_attention_heads,
        num_key_value_heads=dims.num_key_value_heads,
        intermediate_size=dims.intermediate_size,
        vocab_size=dims.vocab_size,
        max_position_embeddings=dims.max_position_embeddings,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=None,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    return folder
