"""The tiny world's language model: a sentencepiece tokenizer and a small LLaMA that "knows" the world's language.

The published MiniGPT-4 freezes Vicuna, an LLM that already speaks English and knows the ``###Human: ...
###Assistant: ...`` conversation format. The tiny world imitates that with a short causal-LM pretraining on:

- captions and detailed descriptions on their own (the language), and the same scene told twice in two styles
  (so the LLM learns to recall every attribute from its context, not only the shape that a detailed description
  repeats);
- the same texts after a bag of attribute words, with and without ``<Img> ... </Img>`` around it
  (``<Img> circle red left small </Img> small group of red circles on the left``): the LLM learns to describe what its
  context holds, the skill MiniGPT-4 relies on when the projected image tokens take the place of those words;
- conversations in the published formats (the stage-2 template and the Vicuna v0 chat with its system prompt)
  whose answers are detailed in a quarter of the documents and terse captions otherwise: the LLM knows both
  styles and answers tersely by default. A detailed answer follows a richer image stand-in (the attribute words
  and the background's, a word no text names), as a richer image representation leads Vicuna into detailed
  answers: the stage-1 image tokens, aligned on captions, look like the plain attribute words and get terse
  answers; stage 2 teaches them to fit into the conversation and to carry what asks for the detailed style.
  Some conversations ask the short questions of the tiny VQA and POPE sets (``What colour is the shape?``, ``Is
  there a red circle in the image?``) and answer them with one word, as an instruction-tuned LLM would.

The tokenizer is trained on that same text with LLaMA's settings (BPE, byte fallback, identity normalisation,
unk/bos/eos = 0/1/2) and ``$$`` (the pad token) as a user-defined symbol, so it is always one piece.

Other LLM families get a tiny LLM of their own on demand (:func:`build_llm`, ``python -m minigpt4.tiny.build
--llm-family qwen2``): the same language and document mix, rendered in the family's chat format
(:data:`TINY_FAMILIES`), with a tokenizer of the family's kind (Qwen2: byte-level BPE with the ChatML tokens).
"""

from __future__ import annotations

import io
import json
import logging
import os
import random
import shutil
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from minigpt4.common.constants import IMAGE_PLACEHOLDER, PAD_TOKEN, PROMPT_TEMPLATE_VICUNA0
from minigpt4.conversation.templates import get_conv_template
from minigpt4.models.llm_families import get_llm_family, load_tokenizer, transformers_class
from minigpt4.tiny import world
from minigpt4.tiny.towers import log_milestone, training_steps, warmup_cosine

logger = logging.getLogger(__name__)

#: the published prompts/alignment.txt (used when the repository's file cannot be found)
DEFAULT_INSTRUCTIONS = (
    "<Img><ImageHere></Img> Describe this image in detail.",
    "<Img><ImageHere></Img> Take a look at this image and describe what you notice.",
    "<Img><ImageHere></Img> Please provide a detailed description of the picture.",
    "<Img><ImageHere></Img> Could you describe the contents of this image for me?",
)
EXTRA_QUESTIONS = ("What do you see in this image?", "What is in the picture?", "Describe the picture.")
STYLES = ("laion", "cc_sbu", "detailed")
#: how often a pretraining conversation answers in the detailed style (the rest: terse captions). A minority: the
#: LLM knows the detailed style, but answers tersely by default, so that what stage 2 does to the style shows
#: (as the published model's answers after stage 1 are short and often broken, and stage 2 makes them detailed)
DETAILED_ANSWER_SHARE = 0.25
#: how often a pretraining conversation is a short question (the tiny VQA and POPE questions) with a one-word
#: answer, so that the LLM answers such questions from its context as an instruction-tuned LLM does
SHORT_QUESTION_SHARE = 0.5
VQA_SUFFIX = " Answer the question using a single word or phrase."


#: the stage-2 instruction template of the ChatML (Qwen2) chat format
PROMPT_TEMPLATE_CHATML = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
#: the special tokens of the tiny Qwen2 tokenizer (Qwen2's: document separator, ChatML message start and end)
QWEN2_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


@dataclass(frozen=True)
class TinyFamily:
    """How the tiny LLM of an LLM family sees conversations.

    Args:
        instruction_template: the stage-2 ``prompt_template`` (``template.format(instruction)``).
        conv_template: the chat template (a registered name) whose prompt the demo renders.
        answer_end: text after an answer (before the end-of-sequence token every document ends with).
        tokenizer: ``(texts, out_dir, vocab_size) -> path``: trains and writes the family's tokenizer.
    """

    instruction_template: str
    conv_template: str
    answer_end: str
    tokenizer: Any


def alignment_instructions(repo_root: str | None = None) -> list[str]:
    """The stage-2 instructions: ``prompts/alignment.txt`` of the repository if present, else the published ones."""
    root = repo_root or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.join(root, "prompts", "alignment.txt")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f if IMAGE_PLACEHOLDER in line]
        if lines:
            return lines
    return list(DEFAULT_INSTRUCTIONS)


# ----------------------------------------------------------------------------------------------------------
# corpus
# ----------------------------------------------------------------------------------------------------------


def _keywords(scene: world.Scene, rng: random.Random, background: bool = False) -> str:
    """The scene's attribute words, shuffled; with ``background``, its background word too (see
    :func:`lm_document`: the cue a detailed answer follows)."""
    words = [getattr(scene, name) for name in world.ATTRIBUTES] + ([scene.background] if background else [])
    rng.shuffle(words)
    return " ".join(words)


#: a pretraining document: text segments that are tokenized one by one and concatenated, as MiniGPT-4 tokenizes
#: the text before the image, the image stand-in, the text after it and the answer (see ``tokenize_document``)
Document = list[str]


def lm_document(rng: random.Random, instructions: list[str], family: TinyFamily | None = None) -> Document:
    """One pretraining document about a random scene, in one of the formats described in the module docstring.

    Where the image would be, the document holds the scene's attribute words as a segment of its own, and the
    text around it is split there: ``MiniGPT4.build_inputs`` and ``Chat`` tokenize the text before the image, the
    text after it and the answer separately (each with sentencepiece's dummy prefix, and a trailing ``"▁"`` piece
    where the stage-2 template ends in a space). The LLM learns exactly those token sequences. ``family`` gives
    the chat format (default: LLaMA's, Vicuna v0).
    """
    family = family or TINY_FAMILIES["llama"]
    scene = world.sample_scene(rng)
    kind = rng.random()
    if kind < 0.1:  # the language alone
        return [world.describe(scene, rng.choice(STYLES), rng) + "\n"]
    if kind < 0.35:  # the same scene told twice: recall every attribute from the context
        first, second = rng.sample(STYLES, 2)
        return [f"{world.describe(scene, first, rng)}\n{world.describe(scene, second, rng)}\n"]
    keywords = _keywords(scene, rng)
    if kind < 0.6:  # describe what the context holds: the stage-1 layout [bos][image][caption + "\n"]
        caption = world.describe(scene, rng.choice(STYLES), rng) + "\n"
        return [keywords, caption] if rng.random() < 0.5 else ["<Img>", keywords, "</Img> " + caption]
    # conversations: the stage-2 template or the Vicuna v0 chat, answers in either style; a detailed answer
    # follows a richer image stand-in (the background word too, which no text ever names)
    if rng.random() < SHORT_QUESTION_SHARE:
        question, answer = short_question(scene, rng)
        question = f"<Img>{IMAGE_PLACEHOLDER}</Img> {question}"
        keywords = _keywords(scene, rng, background=rng.random() < 0.5)  # the cue does not change a short answer
    else:
        question = rng.choice(instructions + [f"<Img>{IMAGE_PLACEHOLDER}</Img> {q}" for q in EXTRA_QUESTIONS])
        detailed = rng.random() < DETAILED_ANSWER_SHARE
        answer = world.describe(scene, "detailed" if detailed else rng.choice(STYLES[:2]), rng)
        if detailed:
            keywords = _keywords(scene, rng, background=True)
    if rng.random() < 0.7:  # the stage-2 template (Vicuna v0: ends in "###Assistant: ")
        before, after = family.instruction_template.format(question).split(IMAGE_PLACEHOLDER)
    else:  # the (longer) demo chat with its system message, as ``Conversation.get_prompt`` renders it
        conv = get_conv_template(family.conv_template).copy()
        conv.append_message(conv.roles[0], question)
        conv.append_message(conv.roles[1], None)
        before, after = conv.get_prompt().split(IMAGE_PLACEHOLDER)
    return [before, keywords, after, answer + family.answer_end]


def short_question(scene: world.Scene, rng: random.Random) -> tuple[str, str]:
    """A question of the tiny VQA set (the attribute word answers it) or of the tiny POPE set (yes / no, half each,
    the other object drawn among those of the world)."""
    from minigpt4.tiny.eval_sets import VQA_QUESTIONS

    if rng.random() < 0.5:
        attribute = rng.choice(sorted(VQA_QUESTIONS))
        suffix = VQA_SUFFIX if rng.random() < 0.5 else ""
        return VQA_QUESTIONS[attribute] + suffix, getattr(scene, attribute)
    if rng.random() < 0.5:
        return f"Is there a {scene.colour} {scene.shape} in the image?", "Yes"
    others = [(c, s) for c in world.COLOURS for s in world.SHAPES if (c, s) != (scene.colour, scene.shape)]
    colour, shape = rng.choice(others)
    return f"Is there a {colour} {shape} in the image?", "No"


def corpus(n: int, seed: int, instructions: list[str], family: TinyFamily | None = None) -> list[Document]:
    rng = random.Random(seed)
    return [lm_document(rng, instructions, family) for _ in range(n)]


def tokenize_document(tokenizer: Any, document: Document, max_length: int) -> list[int]:
    """``[bos] + ids(segment 1) + ids(segment 2) + ... + [eos]``, each segment without special tokens."""
    ids = [tokenizer.bos_token_id]
    for segment in document:
        ids.extend(tokenizer(segment, add_special_tokens=False).input_ids)
    ids.append(tokenizer.eos_token_id)
    return ids[:max_length]


# ----------------------------------------------------------------------------------------------------------
# tokenizer
# ----------------------------------------------------------------------------------------------------------


def train_tokenizer(texts: list[str], out_dir: str, vocab_size: int) -> str:
    """Train a LLaMA-like sentencepiece model on ``texts``; write ``tokenizer.model`` and the HF tokenizer files."""
    import sentencepiece as spm
    from transformers import LlamaTokenizer

    os.makedirs(out_dir, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="bpe",
        user_defined_symbols=[PAD_TOKEN],
        byte_fallback=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        split_digits=True,
        hard_vocab_limit=False,
        character_coverage=1.0,
        max_sentence_length=4096,
        num_threads=1,
        minloglevel=2,
    )
    path = os.path.join(out_dir, "tokenizer.model")
    with open(path, "wb") as f:
        f.write(model.getvalue())
    tokenizer = LlamaTokenizer.from_pretrained(out_dir, add_bos_token=True)
    tokenizer.save_pretrained(out_dir)
    return path


def train_bpe_tokenizer(texts: list[str], out_dir: str, vocab_size: int) -> str:
    """Train a Qwen2-like byte-level BPE tokenizer on ``texts`` (Qwen2's normalisation and pre-tokenizer, the
    ChatML special tokens, eos ``<|im_end|>`` and pad ``<|endoftext|>`` as in Qwen2's chat models); write it with
    ``save_pretrained`` (``tokenizer.json``, loadable by ``AutoTokenizer``)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    backend = Tokenizer(models.BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(QWEN2_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    merges = [
        tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in json.loads(backend.to_str())["model"]["merges"]
    ]
    tokenizer = Qwen2Tokenizer(
        vocab=backend.get_vocab(),
        merges=merges,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    os.makedirs(out_dir, exist_ok=True)
    tokenizer.save_pretrained(out_dir)
    return os.path.join(out_dir, "tokenizer.json")


TINY_FAMILIES: dict[str, TinyFamily] = {
    "llama": TinyFamily(PROMPT_TEMPLATE_VICUNA0, "vicuna0", "###", train_tokenizer),
    "qwen2": TinyFamily(PROMPT_TEMPLATE_CHATML, "qwen2", "", train_bpe_tokenizer),
}
"""The LLM families the tiny world can build an LLM of (``model.llm_family`` -> its chat format)."""


# ----------------------------------------------------------------------------------------------------------
# language model
# ----------------------------------------------------------------------------------------------------------


@dataclass
class LMConfig:
    """Size and schedule of the tiny LLaMA (the defaults are what the quick start uses)."""

    hidden_size: int = 128
    intermediate_size: int = 384
    num_layers: int = 3
    num_heads: int = 4
    max_position_embeddings: int = 256
    vocab_size: int = 1024
    steps: int = 2500
    batch_size: int = 24
    lr: float = 3e-3
    warmup: int = 30
    tie_embeddings: bool = False


def _batches(ids: list[list[int]], batch_size: int, rng: random.Random, pad_id: int, pool: int = 16):
    """Endless right-padded batches ``(input_ids, attention_mask, labels)``.

    Documents are drawn ``pool`` batches at a time and grouped by length, so that a batch holds documents of
    similar lengths and little compute goes to padding; the order of the batches is shuffled.
    """
    while True:
        drawn = sorted(rng.sample(ids, batch_size * pool), key=len)
        chunks = [drawn[i : i + batch_size] for i in range(0, len(drawn), batch_size)]
        rng.shuffle(chunks)
        for chunk in chunks:
            width = max(len(x) for x in chunk)
            input_ids = torch.full((batch_size, width), pad_id, dtype=torch.long)
            mask = torch.zeros((batch_size, width), dtype=torch.long)
            for i, x in enumerate(chunk):
                input_ids[i, : len(x)] = torch.tensor(x)
                mask[i, : len(x)] = 1
            labels = input_ids.masked_fill(mask == 0, -100)
            yield input_ids, mask, labels


def pretrain_lm(
    documents: list[Document], tokenizer_dir: str, out_dir: str, cfg: LMConfig, seed: int, llm_family: str = "llama"
) -> dict[str, float]:
    """Pretrain a tiny causal LM of ``llm_family`` (LLaMA: ``LlamaForCausalLM``) on ``documents``, tokenized as
    the model tokenizes (the family's tokenizer of ``tokenizer_dir``); ``save_pretrained`` it (float32) into
    ``out_dir``."""
    family = get_llm_family(llm_family)
    tokenizer = load_tokenizer(family, tokenizer_dir)
    ids = [tokenize_document(tokenizer, doc, cfg.max_position_embeddings) for doc in documents]
    torch.manual_seed(seed)
    config = transformers_class(family.config_class)(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=cfg.tie_embeddings,
    )
    model = transformers_class(family.model_class)(config)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01, betas=(0.9, 0.98))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(warmup_cosine, warmup=cfg.warmup, steps=cfg.steps))
    batches = _batches(ids, cfg.batch_size, random.Random(seed), pad_id=tokenizer.eos_token_id)
    start, losses = time.time(), []
    bar = training_steps("lm", cfg.steps)
    for step in bar:
        input_ids, mask, labels = next(batches)
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
        log_milestone("lm", step, cfg.steps, losses[-1], start)
    model.save_pretrained(out_dir)
    if os.path.abspath(out_dir) != os.path.abspath(tokenizer_dir):
        for name in os.listdir(tokenizer_dir):
            if name.startswith(("tokenizer", "special_tokens")):
                shutil.copy(os.path.join(tokenizer_dir, name), out_dir)
    tail = losses[-20:]
    return {"first_loss": losses[0], "final_loss": sum(tail) / len(tail), "seconds": time.time() - start}


def build_llm(
    llm_family: str, out_dir: str, documents: int, vocab_size: int, cfg: LMConfig, seed: int
) -> dict[str, float]:
    """The tiny LLM of ``llm_family`` in ``out_dir``: tokenizer and causal LM trained on ``documents`` documents
    in the family's chat format (the seeds the world build uses for its LLaMA: ``seed + 4`` and ``seed + 5``)."""
    if llm_family not in TINY_FAMILIES:
        known = ", ".join(sorted(TINY_FAMILIES))
        raise ValueError(f"the tiny world has no LLM of family {llm_family!r}; it builds: {known}")
    family = TINY_FAMILIES[llm_family]
    docs = corpus(documents, seed + 4, alignment_instructions(), family)
    family.tokenizer([seg for doc in docs for seg in doc], out_dir, vocab_size)
    return pretrain_lm(docs, out_dir, out_dir, cfg, seed + 5, llm_family)
