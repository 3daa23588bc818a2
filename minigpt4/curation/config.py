"""The curation YAML: one typed schema, validated like every other config.

An unknown key, a wrong type, a value out of range or a missing required value (``???``) fails with the dotted
key and the file (or ``--options``) that set it. Paths relative to the YAML's folder are not rewritten: like the
training configs, they are relative to the current directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, OmegaConf

from minigpt4.common.config import (
    OPTIONS_LABEL,
    ConfigError,
    _Origins,
    bounded,
    load_yaml,
    parse_options,
    path_field,
    validate,
)

PAPER_PROMPT = "Describe this image in detail. Give as many details as possible. Say everything you see."
PAPER_CONTINUE_PROMPT = "Continue"
PAPER_REFINE_PROMPT_PATH = "prompts/refine_paper.txt"
PAPER_FAILURE_PHRASES = (
    "I'm sorry",
    "I am sorry",
    "I apologize",
    "I made a mistake",
    "As an AI",
    "I cannot",
    "Here is the corrected",
    "The given paragraph",
    "The input paragraph",
)


@dataclasses.dataclass
class ImagesConfig:
    """Where the images come from (exactly one of ``folder`` / ``shards``) and the seeded sample of them.

    ``folder``: image files (sorted by name; the id is the file name without its extension). ``shards``:
    webdataset tar shards (brace patterns, several joined by ``::``); the id is the sample key.
    ``sample``: how many images to draw (None: all), with ``seed``.
    """

    folder: Optional[str] = path_field(None, kind="folder")
    shards: Optional[str] = path_field(None, kind="shards")
    sample: Optional[int] = bounded(None, gt=0)
    seed: int = 0


@dataclasses.dataclass
class GenerateConfig:
    """The stage-1 model and how it is asked (the paper's prompts by default).

    ``model_cfg``: an eval config (as for ``demo.py``) with ``model.ckpt`` the stage-1 checkpoint; ``options``:
    its ``--options``. A description shorter than ``min_tokens`` LLM tokens gets ``continue_prompt`` asked in
    the same conversation, and the continuation appended. Decoding is greedy by default (reproducible).
    """

    model_cfg: str = MISSING
    options: list[str] = dataclasses.field(default_factory=list)
    device: Optional[str] = None
    batch_size: int = bounded(8, gt=0)
    prompt: str = PAPER_PROMPT
    continue_prompt: str = PAPER_CONTINUE_PROMPT
    min_tokens: int = bounded(80, ge=0)
    max_new_tokens: int = bounded(300, gt=0)
    num_beams: int = bounded(1, gt=0)
    do_sample: bool = False
    temperature: float = bounded(1.0, gt=0)
    top_p: float = bounded(0.9, gt=0, le=1)
    repetition_penalty: float = bounded(1.05, gt=0)
    max_length: int = bounded(2000, gt=0)


@dataclasses.dataclass
class OpenAIConfig:
    """An OpenAI-compatible chat-completions endpoint (ChatGPT, or a local vLLM / SGLang / llama.cpp server).

    ``base_url`` None: the client's default (or ``OPENAI_BASE_URL``); the key is read from the environment
    variable ``api_key_env``. ``max_retries`` more tries after a 429, a 5xx, a timeout, a lost connection or
    a malformed reply, waiting ``backoff * 2**try`` seconds (at most ``max_backoff``); then the record is
    marked failed (a later run tries it again). Cost: ``price_input`` / ``price_output`` per million tokens.
    """

    model: str = "gpt-3.5-turbo"
    base_url: Optional[str] = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = bounded(4, gt=0)
    timeout: float = bounded(60.0, gt=0)
    max_retries: int = bounded(5, ge=0)
    backoff: float = bounded(1.0, ge=0)
    max_backoff: float = bounded(60.0, ge=0)
    temperature: float = bounded(0.0, ge=0)
    max_tokens: Optional[int] = bounded(None, gt=0)
    price_input: float = bounded(0.0, ge=0)
    price_output: float = bounded(0.0, ge=0)


@dataclasses.dataclass
class HFConfig:
    """A local Hugging Face causal LM, run by transformers on this machine (no server), in batches.

    ``model``: a ``save_pretrained`` folder; ``llm_family`` says which classes load it (as ``model.llm_family``
    does: ``llama``, ``qwen2``). The message is the prompt, a blank line and the text. ``template``: the text
    around the message, ``{}`` standing for it (Vicuna v0: ``"###Human: {} ###Assistant: "``); None: the
    tokenizer's chat template when it has one, else the message and a newline. ``stop``: the answer is cut where
    this string starts (Vicuna v0: ``"###"``, the next turn). Decoding is greedy (deterministic: a rerun gives the
    same text) for at most ``max_new_tokens``. ``device`` None: CUDA when available, else the CPU; ``dtype``:
    ``float32``, ``float16`` or ``bfloat16``.
    """

    model: Optional[str] = path_field(None, kind="model")
    llm_family: str = "llama"
    template: Optional[str] = None
    stop: Optional[str] = None
    batch_size: int = bounded(8, gt=0)
    max_new_tokens: int = bounded(400, gt=0)
    dtype: str = "float32"
    device: Optional[str] = None


@dataclasses.dataclass
class RefineConfig:
    """How descriptions are cleaned: ``backend`` ``rule`` (no model), ``openai`` (an OpenAI-compatible endpoint)
    or ``hf`` (a local Hugging Face causal LM).

    ``input``: ``generate`` (the generated text) or ``refine`` (the latest refined text, e.g. rules first,
    then an LLM). ``prompt_path``: the instruction given to the LLM, followed by a blank line and the text.
    """

    backend: str = "rule"
    input: str = "generate"
    prompt_path: str = path_field(PAPER_REFINE_PROMPT_PATH, kind="model")
    openai: OpenAIConfig = dataclasses.field(default_factory=OpenAIConfig)
    hf: HFConfig = dataclasses.field(default_factory=HFConfig)


@dataclasses.dataclass
class FilterConfig:
    """Named rules; a rule is off when its setting is None (or ``failure_phrases`` is empty).

    ``failure_phrases``: the LLM failed (case-insensitive substrings); ``min_words`` / ``max_words``;
    ``max_repetition``: the share of sentences that repeat an earlier one; ``max_non_language``: the share of
    characters that are neither letters, digits, spaces nor common punctuation; ``min_similarity``: refine
    changed too much (difflib ratio between the generated and the refined text, 0..1).
    """

    failure_phrases: list[str] = dataclasses.field(default_factory=lambda: list(PAPER_FAILURE_PHRASES))
    min_words: Optional[int] = bounded(10, ge=0)
    max_words: Optional[int] = bounded(400, gt=0)
    max_repetition: Optional[float] = bounded(0.3, ge=0, le=1)
    max_non_language: Optional[float] = bounded(0.05, ge=0, le=1)
    min_similarity: Optional[float] = bounded(0.3, ge=0, le=1)


@dataclasses.dataclass
class ReviewConfig:
    """The review page: where it listens."""

    host: str = "127.0.0.1"
    port: int = bounded(7861, ge=0, lt=65536)


@dataclasses.dataclass
class ExportConfig:
    """The ``cc_sbu_align`` folder written by ``export`` (``filter_cap.json`` + ``image/<id>.jpg``)."""

    folder: str = MISSING
    overwrite: bool = False
    jpeg_quality: int = bounded(95, gt=0, le=100)


@dataclasses.dataclass
class CurateConfig:
    """The whole curation job; ``store`` is the JSONL file every step reads and appends to."""

    store: str = MISSING
    images: ImagesConfig = dataclasses.field(default_factory=ImagesConfig)
    generate: GenerateConfig = dataclasses.field(default_factory=GenerateConfig)
    refine: RefineConfig = dataclasses.field(default_factory=RefineConfig)
    filter: FilterConfig = dataclasses.field(default_factory=FilterConfig)
    review: ReviewConfig = dataclasses.field(default_factory=ReviewConfig)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)


REFINE_BACKENDS = ("rule", "openai", "hf")
HF_DTYPES = ("float32", "float16", "bfloat16")
REFINE_INPUTS = ("generate", "refine")


def load_curate_config(path: str | os.PathLike[str], options: Sequence[str] | None = None) -> DictConfig:
    """The validated curation config of ``path`` with ``options`` (``key=value``) merged over it.

    Sections a step does not use may keep their ``???`` values: :func:`require` checks them when needed.
    """
    path = os.fspath(path)
    user = load_yaml(path)
    extra = parse_options(options)
    origins = _Origins()
    origins.record(user, "", path)
    origins.record(extra, "", OPTIONS_LABEL)
    merged = OmegaConf.merge(user, extra)
    base = OmegaConf.structured(CurateConfig)
    try:
        # validate() reports missing values; they are allowed here until a step needs them
        cfg = validate(CurateConfig, merged, "", origins, path)
    except ConfigError as err:
        if "required value" not in str(err):
            raise
        cfg = OmegaConf.merge(base, merged)
    _check_choices(cfg, origins, path)
    return cfg


def _check_choices(cfg: DictConfig, origins: _Origins, path: str) -> None:
    for key, value, allowed in (
        ("refine.backend", cfg.refine.backend, REFINE_BACKENDS),
        ("refine.input", cfg.refine.input, REFINE_INPUTS),
        ("refine.hf.dtype", cfg.refine.hf.dtype, HF_DTYPES),
    ):
        if value not in allowed:
            raise ConfigError(f"{origins.of(key, path)}: {key}: unknown value {value!r}; known: {', '.join(allowed)}")
    if cfg.images.folder and cfg.images.shards:
        raise ConfigError(f"{origins.of('images', path)}: images: give either images.folder or images.shards, not both")


def require(cfg: DictConfig, *keys: str, source: str) -> None:
    """Fail naming the first of ``keys`` (dotted) that is still ``???``."""
    for key in keys:
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        if OmegaConf.is_missing(node, leaf):
            raise ConfigError(
                f"{source}: required value {key!r} is not set; set it in the file or with --options {key}=..."
            )


def settings_key(step: str, settings: Any) -> str:
    """A version key ``step:<12 hex digits>`` that changes whenever ``settings`` (plain JSON data) change."""
    text = json.dumps(settings, sort_keys=True, ensure_ascii=False)
    return f"{step}:{hashlib.sha256(text.encode('utf-8')).hexdigest()[:12]}"


def plain(node: Any) -> Any:
    """A plain Python copy of a config node."""
    if isinstance(node, DictConfig) or OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    return node
