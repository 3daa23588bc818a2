"""Batch captioning: answer one prompt about many images, into JSONL.

    python -m minigpt4.cli.caption --cfg-path eval_configs/minigpt4_eval.yaml --images photos/ \\
        --prompt "Describe this image in detail." --out captions.jsonl --batch-size 8

``--images`` is a folder (its image files, sorted by name) or a JSONL file whose lines hold ``{"image": path}``
(relative paths are relative to the JSONL file) and optionally their own ``"prompt"``. Each output line is
``{"image": ..., "prompt": ..., "answer": ...}`` with ``image`` as the input named it.

Resumable: items whose (image, prompt) already has an answer in the output are skipped, so re-running the same
command finishes an interrupted job. Decoding is greedy unless ``--sample``.

Sharded under torchrun (``torchrun --nproc_per_node 4 -m minigpt4.cli.caption ...``): rank ``r`` of ``W`` takes
every ``W``-th pending item starting at ``r`` and appends to ``<out>.rank<r>.jsonl``; when every rank is done,
rank 0 merges the part files into ``<out>`` (input order) and removes them. Part files left by an interrupted
sharded run count as done on the next run, whatever its number of ranks.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from minigpt4.cli.common import (
    add_generation_args,
    add_model_args,
    check_generation_args,
    generation_options,
    load_chat,
)
from minigpt4.common import jsonl_shards
from minigpt4.common.jsonl_shards import done_records, part_files, part_path
from minigpt4.conversation.batch import ask_batch
from minigpt4.conversation.conversation import Chat, Conversation
from minigpt4.conversation.generation import GREEDY, GenerationConfig

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
DEFAULT_PROMPT = "Describe this image in detail."
PROG = "python -m minigpt4.cli.caption"
CAPTION_GENERATION = GREEDY
"""Captioning decodes greedily (reproducible drafts); every other option is the demo's."""


@dataclass(frozen=True)
class Item:
    """One image to caption: ``name`` as the input gave it (the output key), ``path`` to open, the prompt."""

    name: str
    path: str
    prompt: str

    @property
    def key(self) -> tuple[str, str]:
        return self.name, self.prompt


# ----------------------------------------------------------------------------------------------------------
# inputs and outputs
# ----------------------------------------------------------------------------------------------------------


def list_items(images: str, prompt: str) -> list[Item]:
    """The items of a folder or a JSONL file, in order."""
    source = Path(images)
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        return [Item(str(p), str(p), prompt) for p in files]
    if not source.is_file():
        raise FileNotFoundError(f"--images: {images} is neither a folder nor a JSONL file")
    items = []
    with open(source, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                name = str(record["image"])
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"{images}:{lineno}: expected a JSON object with an 'image' key") from err
            path = name if os.path.isabs(name) else str(source.parent / name)
            items.append(Item(name, path, str(record.get("prompt") or prompt)))
    return items


def finished_keys(out: Path) -> set[tuple[str, str]]:
    return {(r["image"], r["prompt"]) for r in done_records(out)}


def merge_parts(out: Path, items: Sequence[Item]) -> int:
    """Write every answered record (output + part files) into ``out`` in input order; remove the parts."""
    order = {item.key: i for i, item in enumerate(items)}
    return jsonl_shards.merge_parts(out, lambda r: (r["image"], r["prompt"]), order)


# ----------------------------------------------------------------------------------------------------------
# captioning
# ----------------------------------------------------------------------------------------------------------


def caption_batch(chat: Chat, template: Conversation, items: Sequence[Item], options: GenerationConfig) -> list[dict]:
    """Answer a batch; unreadable images are logged and left out (a later run retries them)."""
    loaded, images = [], []
    for item in items:
        try:
            images.append(chat.load_image(item.path))
            loaded.append(item)
        except (OSError, ValueError, SyntaxError) as err:
            logger.warning("skipping %s: %s", item.path, err)
    if not loaded:
        return []
    answers = ask_batch(chat, template, images, [item.prompt for item in loaded], config=options)
    return [{"image": item.name, "prompt": item.prompt, "answer": answer} for item, answer in zip(loaded, answers)]


def pending_items(items: Sequence[Item], out: Path) -> list[Item]:
    """The items without an answer in ``out`` or its part files."""
    done = finished_keys(out)
    pending = [item for item in items if item.key not in done]
    logger.info("%d items, %d already done, %d to caption", len(items), len(items) - len(pending), len(pending))
    return pending


def run_captioning(
    chat: Chat,
    template: Conversation,
    pending: Sequence[Item],
    out: Path,
    batch_size: int,
    options: GenerationConfig,
    rank: int = 0,
    world_size: int = 1,
) -> int:
    """Caption this rank's share of ``pending`` (every rank must pass the same list), appending to its output.

    Returns how many records were written.
    """
    mine = pending[rank::world_size]
    target = out if world_size == 1 else part_path(out, rank)
    written = jsonl_shards.append_in_batches(
        target, mine, batch_size, lambda batch: caption_batch(chat, template, batch, options), "caption", rank == 0
    )
    if written < len(mine):
        logger.warning("rank %d: %d of %d images could not be read", rank, len(mine) - written, len(mine))
    return written


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description="Caption many images with MiniGPT-4 into JSONL (resumable)")
    add_model_args(parser)
    parser.add_argument("--images", required=True, help="a folder of images or a JSONL file of {'image': path}")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help="the question asked about every image")
    parser.add_argument("--out", required=True, help="output JSONL (appended to; finished items are skipped)")
    parser.add_argument("--batch-size", type=int, default=8)
    add_generation_args(parser, CAPTION_GENERATION)
    return check_generation_args(parser, parser.parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    import torch

    from minigpt4.common.dist_utils import barrier, destroy_distributed, init_distributed_mode
    from minigpt4.common.logger import setup_logger

    args = parse_args(argv)
    dist_cfg = SimpleNamespace(device="cuda" if torch.cuda.is_available() else "cpu", dist_url="env://")
    init_distributed_mode(dist_cfg)
    setup_logger(rank=dist_cfg.rank)
    if args.device is None and dist_cfg.gpu is not None:
        args.device = f"cuda:{dist_cfg.gpu}"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    items = list_items(args.images, args.prompt)
    loaded = load_chat(args)
    options = generation_options(args)
    try:
        pending = pending_items(items, out)
        barrier()  # every rank has the same pending list before anyone writes
        run_captioning(
            loaded.chat, loaded.template, pending, out, args.batch_size, options, dist_cfg.rank, dist_cfg.world_size
        )
        barrier()
        if dist_cfg.rank == 0 and (dist_cfg.world_size > 1 or part_files(out)):
            logger.info("merged %d records into %s", merge_parts(out, items), out)
    finally:
        destroy_distributed()
    return 0


if __name__ == "__main__":
    from minigpt4.common.config import run_entry_point

    sys.exit(run_entry_point(main, prog=PROG))
