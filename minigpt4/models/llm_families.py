"""LLM families: how MiniGPT-4 loads, tokenizes and pads each kind of language model, in one table.

``model.llm_family`` names an entry of :data:`LLM_FAMILIES`; the entry says which transformers classes load the
folder of ``model.llama_model``, how its tokenizer is made, which string pads, what stands in for ``bos`` when
the tokenizer has none, and which model types (default YAMLs) are built on it. The chat template is a separate
registered name (``model.conv_template``, see ``minigpt4.conversation.templates``), so one family can serve
several templates (LLaMA: Vicuna v0's ``###`` and LLaMA-2's ``[INST]``).

Adding a family: one :class:`LLMFamily` entry here, one template in ``minigpt4/conversation/templates.py``, and
its YAMLs (``configs/models/minigpt4_<type>.yaml``, train and eval configs).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from minigpt4.common.constants import PAD_TOKEN

logger = logging.getLogger(__name__)


def _llama_tokenizer(path: str) -> Any:
    from minigpt4.models.llama_tokenizer import SentencePieceLlamaTokenizer

    return SentencePieceLlamaTokenizer.from_folder(path, add_bos_token=True)


def _auto_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


@dataclass(frozen=True)
class LLMFamily:
    """One kind of language model.

    Args:
        name: the ``model.llm_family`` value.
        architecture: the ``model_type`` its Hugging Face ``config.json`` must have (checked when loading).
        model_class: the transformers causal-LM class that loads (and, in the tiny world, builds) it.
        config_class: the transformers config class of that architecture.
        tokenizer: folder -> tokenizer.
        pad_token: the string that pads; None keeps the tokenizer's own pad token.
        bos_token: what fills the ``[bos]`` slot of MiniGPT-4's layout when the tokenizer has no bos token.
        model_types: ``model.model_type`` -> default YAML (relative to the package) of the model types built on it.
    """

    name: str
    architecture: str
    model_class: str
    config_class: str
    tokenizer: Callable[[str], Any]
    pad_token: str | None = None
    bos_token: str | None = None
    model_types: Mapping[str, str] = field(default_factory=dict)


LLM_FAMILIES: dict[str, LLMFamily] = {
    # LLaMA / Vicuna / LLaMA-2: sentencepiece tokenized as published, padded with "$$" (LLaMA has no pad token)
    "llama": LLMFamily(
        name="llama",
        architecture="llama",
        model_class="LlamaForCausalLM",
        config_class="LlamaConfig",
        tokenizer=_llama_tokenizer,
        pad_token=PAD_TOKEN,
        model_types={
            "pretrain_vicuna0": "configs/models/minigpt4_vicuna0.yaml",
            "pretrain_llama2": "configs/models/minigpt4_llama2.yaml",
            "tiny": "configs/models/minigpt4_tiny.yaml",
            "tiny_llama2": "configs/models/minigpt4_tiny_llama2.yaml",
        },
    ),
    # Qwen2 (chat models use ChatML): byte-level BPE through AutoTokenizer, padded with its own <|endoftext|>;
    # it has no bos token, and <|endoftext|> (its document separator) takes the [bos] slot
    "qwen2": LLMFamily(
        name="qwen2",
        architecture="qwen2",
        model_class="Qwen2ForCausalLM",
        config_class="Qwen2Config",
        tokenizer=_auto_tokenizer,
        bos_token="<|endoftext|>",
        model_types={
            "pretrain_qwen2": "configs/models/minigpt4_qwen2.yaml",
            "tiny_qwen2": "configs/models/minigpt4_tiny_qwen2.yaml",
        },
    ),
}


def get_llm_family(name: str) -> LLMFamily:
    """The family called ``name`` (a clear error naming ``model.llm_family`` otherwise)."""
    if name not in LLM_FAMILIES:
        raise ValueError(f"model.llm_family: unknown LLM family {name!r}; known: {', '.join(sorted(LLM_FAMILIES))}")
    return LLM_FAMILIES[name]


def model_type_configs() -> dict[str, str]:
    """Every model type of every family -> its default YAML (``MiniGPT4.PRETRAINED_MODEL_CONFIG_DICT``)."""
    configs: dict[str, str] = {}
    for family in LLM_FAMILIES.values():
        for model_type, path in family.model_types.items():
            if model_type in configs:
                raise ValueError(f"model type {model_type!r} is declared by two LLM families")
            configs[model_type] = path
    return configs


def transformers_class(name: str) -> Any:
    import transformers

    return getattr(transformers, name)


def load_tokenizer(family: LLMFamily, path: str) -> Any:
    """The family's tokenizer for the folder ``path``, with its pad and bos tokens set."""
    tokenizer = family.tokenizer(path)
    if family.pad_token is not None:
        tokenizer.pad_token = family.pad_token
    if tokenizer.bos_token is None and family.bos_token is not None:
        tokenizer.bos_token = family.bos_token
    for role in ("bos", "eos", "pad"):
        if getattr(tokenizer, f"{role}_token_id") is None:
            raise ValueError(f"model.llama_model: the tokenizer of {path} has no {role} token (family {family.name})")
    unk = tokenizer.unk_token_id
    if unk is not None and tokenizer.pad_token_id == unk and tokenizer.pad_token != tokenizer.unk_token:
        logger.warning(
            "the tokenizer of %s has no %r piece: padding uses id %s", path, tokenizer.pad_token, tokenizer.pad_token_id
        )
    return tokenizer


def family_mismatch(family: LLMFamily, path: str) -> str | None:
    """Why the folder ``path`` is not of ``family`` (its config.json's ``model_type`` is another), or None; also
    None for a folder without config.json (``from_pretrained`` says what is missing)."""
    config = os.path.join(path, "config.json")
    if not os.path.isfile(config):
        return None
    with open(config, encoding="utf-8") as f:
        found = json.load(f).get("model_type")
    if found == family.architecture:
        return None
    return f"{path} holds a {found!r} model, but model.llm_family {family.name!r} expects {family.architecture!r}"


def load_causal_lm(family: LLMFamily, path: str, **kwargs: Any) -> nn.Module:
    """The family's causal LM from the folder ``path`` (``kwargs`` go to ``from_pretrained``); a folder of another
    family is refused before any weight is read."""
    problem = family_mismatch(family, path)
    if problem is not None:
        raise ValueError(f"model.llama_model: {problem}: set model.llm_family to the family of that folder")
    return transformers_class(family.model_class).from_pretrained(path, **kwargs)
