"""``generate``: detailed descriptions from the stage-1 model, with the paper's continuation rule.

Each image gets the paper's question in the model's chat template; a description shorter than
``generate.min_tokens`` tokens (the LLM's tokenizer) gets ``Continue`` asked in the same conversation and the
continuation appended. Images go through :meth:`Chat.answer_batch` in fixed batches of the sample (a batch that
an interrupted run left half written is generated again whole, so a resumed run writes exactly what an
uninterrupted one would). Under torchrun rank ``r`` of ``W`` takes the sample's images ``r::W``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig
from tqdm import tqdm

from minigpt4.curation.config import plain, settings_key
from minigpt4.curation.images import ImageRef, list_images, sample
from minigpt4.curation.store import Store, now

logger = logging.getLogger(__name__)

STEP = "generate"
DECODING_KEYS = ("max_new_tokens", "num_beams", "do_sample", "temperature", "top_p", "repetition_penalty", "max_length")


@dataclass
class GenerateReport:
    """What one rank's ``generate`` did."""

    version: str
    sampled: int = 0
    mine: int = 0
    already_done: int = 0
    generated: int = 0
    continued: int = 0
    unreadable: list[str] = field(default_factory=list)


def decoding_options(gen: DictConfig) -> dict[str, Any]:
    return {k: plain(gen[k]) for k in DECODING_KEYS}


def generate_settings(gen: DictConfig, checkpoint: str, template_name: str) -> dict[str, Any]:
    """What decides the text (the version key is their hash): model, checkpoint, prompts, decoding."""
    return {
        "model_cfg": gen.model_cfg,
        "options": list(gen.options),
        "checkpoint": checkpoint,
        "template": template_name,
        "prompt": gen.prompt,
        "continue_prompt": gen.continue_prompt,
        "min_tokens": gen.min_tokens,
        "decoding": decoding_options(gen),
    }


def _model_args(gen: DictConfig, device: str | None) -> argparse.Namespace:
    return argparse.Namespace(
        cfg_path=gen.model_cfg,
        options=list(gen.options) or None,
        device=device or gen.device,
        gpu_id=0,
        no_kv_cache=False,
        retokenize_answers=False,
    )


def model_identity(gen: DictConfig) -> tuple[str, str]:
    """(checkpoint path, chat template name) of ``generate.model_cfg``, read from the config alone."""
    from minigpt4.common.config import Config

    model_cfg = Config(_model_args(gen, None)).model_cfg
    return str(model_cfg.get("ckpt") or ""), str(model_cfg.get("conv_template") or "")


def load_generator(gen: DictConfig, device: str | None = None) -> Any:
    """The :class:`minigpt4.cli.common.LoadedChat` of ``generate.model_cfg`` (the stage-1 checkpoint loaded)."""
    from minigpt4.cli.common import load_chat

    return load_chat(_model_args(gen, device))


def count_tokens(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False).input_ids)


def describe_batch(chat: Any, template: Any, refs: Sequence[ImageRef], gen: DictConfig) -> list[dict[str, Any]]:
    """One result per image: ``{"error": ...}`` for an unreadable image, else the texts and token counts."""
    from minigpt4.conversation.conversation import IMAGE_MESSAGE

    results: list[dict[str, Any]] = [{} for _ in refs]
    images, rows = [], []
    for i, ref in enumerate(refs):
        try:
            images.append(chat.load_image(ref.open()))
            rows.append(i)
        except (OSError, ValueError, SyntaxError) as err:
            results[i] = {"error": f"{type(err).__name__}: {err}"}
    if not rows:
        return results
    embeds = chat.encode_images(images)  # [B, N, D]
    img_lists = [[embeds[j : j + 1]] for j in range(len(rows))]
    convs = []
    for _ in rows:
        conv = template.copy()
        conv.append_message(conv.roles[0], IMAGE_MESSAGE)
        chat.ask(gen.prompt, conv)
        convs.append(conv)
    options = decoding_options(gen)
    firsts = chat.answer_batch(convs, img_lists, **options)
    counts = [count_tokens(chat.tokenizer, text) for text in firsts]
    short = [j for j, n in enumerate(counts) if n < gen.min_tokens]
    continuations: dict[int, str] = {}
    if short:
        for j in short:
            chat.ask(gen.continue_prompt, convs[j])
        more = chat.answer_batch([convs[j] for j in short], [img_lists[j] for j in short], **options)
        continuations = dict(zip(short, more))
    for j, i in enumerate(rows):
        first, cont = firsts[j].strip(), continuations.get(j)
        text = first if cont is None else " ".join(t for t in (first, cont.strip()) if t)
        results[i] = {
            "text": text,
            "first": first,
            "continuation": cont,
            "continued": cont is not None,
            "tokens": {
                "first": counts[j],
                "continuation": None if cont is None else count_tokens(chat.tokenizer, cont),
                "total": count_tokens(chat.tokenizer, text),
            },
            "conversation": convs[j].get_prompt(),
        }
    return results


def _line(ref: ImageRef, version: str, result: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    line: dict[str, Any] = {"id": ref.id, "image": ref.to_json(), "latest": {STEP: version}}
    if "error" in result:
        line["errors"] = {version: result["error"]}
    else:
        line["texts"] = {version: {"step": STEP, **result, "settings": settings, "time": now()}}
    return line


def _done(store: Store, ref: ImageRef, version: str) -> bool:
    record = store.get(ref.id) or {}
    return version in (record.get("texts") or {}) or version in (record.get("errors") or {})


def run_generate(
    cfg: DictConfig,
    store: Store,
    source: str,
    rank: int = 0,
    world_size: int = 1,
    loaded: Any = None,
) -> GenerateReport:
    """Describe this rank's share of the sample, appending to ``store``; ``loaded`` is a ready LoadedChat
    (built from ``generate.model_cfg`` when None, only if there is work)."""
    gen = cfg.generate
    chosen = sample(list_images(cfg.images, source), cfg.images.sample, cfg.images.seed)
    mine = chosen[rank::world_size]
    batches = [mine[i : i + gen.batch_size] for i in range(0, len(mine), gen.batch_size)]
    report = GenerateReport(version="", sampled=len(chosen), mine=len(mine))
    checkpoint, template_name = model_identity(gen)
    settings = generate_settings(gen, checkpoint, template_name)
    report.version = version = settings_key(STEP, settings)
    if loaded is None and any(not _done(store, ref, version) for ref in mine):
        loaded = load_generator(gen)
    logger.info("generate %s: %d images sampled, %d for rank %d", version, len(chosen), len(mine), rank)
    with tqdm(total=len(mine), disable=rank != 0, desc="generate") as bar:
        for batch in batches:
            todo = [ref for ref in batch if not _done(store, ref, version)]
            report.already_done += len(batch) - len(todo)
            if todo:
                results = describe_batch(loaded.chat, loaded.template, batch, gen)  # the whole batch, as first run
                lines = [_line(ref, version, r, settings) for ref, r in zip(batch, results) if ref in todo]
                store.append(lines)
                for line in lines:
                    if "errors" in line:
                        report.unreadable.append(line["id"])
                    else:
                        report.generated += 1
                        report.continued += bool(line["texts"][version]["continued"])
            bar.update(len(batch))
    if report.unreadable:
        logger.warning("rank %d: %d unreadable images: %s", rank, len(report.unreadable), ", ".join(report.unreadable))
    return report
