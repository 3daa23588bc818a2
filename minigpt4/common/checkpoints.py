"""The one table of published checkpoints MiniGPT-4 uses, and where to get them.

minigpt4 never downloads anything: each entry is documentation that error messages (see
:func:`download_hint`, used by :func:`minigpt4.common.utils.resolve_local_file`) and the README quote, so
that a missing published file fails with "download X from Y and set config key Z".
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class KnownCheckpoint:
    """One published checkpoint.

    Args:
        name: the file (or folder) name as published.
        description: what it is.
        source: where to get it (a URL or short instructions).
        config_key: the config key that takes its local path.
        aliases: other names the same file is commonly saved under.
    """

    name: str
    description: str
    source: str
    config_key: str
    aliases: tuple[str, ...] = ()


_LAVIS_BLIP2 = "https://storage.googleapis.com/sfr-vision-language-research/LAVIS/models/BLIP2"

KNOWN_CHECKPOINTS: tuple[KnownCheckpoint, ...] = (
    KnownCheckpoint(
        name="eva_vit_g.pth",
        description="EVA-CLIP ViT-g/14 vision encoder weights (as released with BLIP-2), frozen",
        source=f"{_LAVIS_BLIP2}/eva_vit_g.pth",
        config_key="model.vit_path",
    ),
    KnownCheckpoint(
        name="blip2_pretrained_flant5xxl.pth",
        description="BLIP-2 (FlanT5-XXL) checkpoint; MiniGPT-4 takes its Q-Former and query tokens, frozen",
        source=f"{_LAVIS_BLIP2}/blip2_pretrained_flant5xxl.pth",
        config_key="model.q_former_model",
    ),
    KnownCheckpoint(
        name="vicuna-13b-v0",
        description="Vicuna V0 13B language model (Hugging Face folder), frozen",
        source="https://huggingface.co/Vision-CAIR/vicuna (clone the repository with git-lfs)",
        config_key="model.llama_model",
    ),
    KnownCheckpoint(
        name="vicuna-7b-v0",
        description="Vicuna V0 7B language model (Hugging Face folder), frozen",
        source="https://huggingface.co/Vision-CAIR/vicuna-7b (clone the repository with git-lfs)",
        config_key="model.llama_model",
    ),
    KnownCheckpoint(
        name="Llama-2-7b-chat-hf",
        description="Llama 2 Chat 7B language model (Hugging Face folder, gated: accept Meta's licence first), frozen",
        source="https://huggingface.co/meta-llama/Llama-2-7b-chat-hf (clone the repository with git-lfs)",
        config_key="model.llama_model",
    ),
    KnownCheckpoint(
        name="pretrained_minigpt4.pth",
        description="MiniGPT-4 after stage 2 (Vicuna V0 13B): the trained projection layer",
        source="https://drive.google.com/file/d/1a4zLvaiDBr-36pasffmgpvH5P7CKmpze/view",
        config_key="model.ckpt",
    ),
    KnownCheckpoint(
        name="prerained_minigpt4_7b.pth",
        description="MiniGPT-4 after stage 2 (Vicuna V0 7B): the trained projection layer "
        "(the published file name is spelled 'prerained')",
        source="https://drive.google.com/file/d/1RY9jV0dyqLX-o38LrumkKRh6Jtaop58R/view",
        config_key="model.ckpt",
        aliases=("pretrained_minigpt4_7b.pth",),
    ),
    KnownCheckpoint(
        name="pretrained_minigpt4_llama2_7b.pth",
        description="MiniGPT-4 after stage 2 (Llama 2 Chat 7B): the trained projection layer",
        source="https://drive.google.com/file/d/11nAPjEok8eAGGEG1N2vXo3kBLCg0WgUk/view",
        config_key="model.ckpt",
    ),
)


def find_known_checkpoint(path_or_url: str | None) -> KnownCheckpoint | None:
    """The table entry whose name is the last component of ``path_or_url`` (or whose source it is), if any."""
    if not path_or_url:
        return None
    text = str(path_or_url).rstrip("/")
    base = os.path.basename(text.split("?", 1)[0])
    for entry in KNOWN_CHECKPOINTS:
        if base == entry.name or base in entry.aliases or text == entry.source.split(" ", 1)[0].rstrip("/"):
            return entry
    return None


def checkpoints_for_key(config_key: str) -> list[KnownCheckpoint]:
    """Every known checkpoint whose path goes into ``config_key`` (e.g. ``model.llama_model``)."""
    return [entry for entry in KNOWN_CHECKPOINTS if entry.config_key == config_key]


def download_hint(path_or_url: str | None, config_key: str) -> str:
    """Where to get the file ``config_key`` points at, or "" when that is not a published checkpoint.

    A path or URL whose file name is a published one gets "This is NAME (...): download it from SOURCE ...". An
    empty value gets the list of published files for ``config_key``, if there are any. Any other name (a
    checkpoint of your own, such as a stage-1 ``checkpoint_3.pth``) gets no download advice.
    """
    entry = find_known_checkpoint(path_or_url)
    if entry is not None:
        return (
            f"This is {entry.name} ({entry.description}): download it from {entry.source} "
            f"and set {config_key} to its local path"
        )
    if path_or_url:
        return ""
    candidates = checkpoints_for_key(config_key)
    if not candidates:
        return ""
    listed = "; ".join(f"{e.name} from {e.source}" for e in candidates)
    return f"Published files for {config_key}: {listed}"


def describe_known_checkpoints() -> str:
    """The table as Markdown-ish lines (README and ``--help`` texts)."""
    return "\n".join(
        f"- {e.name}: {e.description}. Get it from {e.source}; set {e.config_key}." for e in KNOWN_CHECKPOINTS
    )
