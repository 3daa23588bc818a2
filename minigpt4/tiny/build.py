"""Build the tiny world: ``python -m minigpt4.tiny.build --out tiny_world [--seed 0] [--small] [--llm-family F]``.

Writes, deterministically for a given ``--seed`` and ``--threads`` (same seed and threads, same bytes; the default
is the number of CPUs this process may use), in the formats of the real data and weights::

    tiny_world/
      world.json                      what was built: seed, sizes, vocabulary, pretraining statistics
      llama/                          tiny LLaMA: config.json, model.safetensors, tokenizer.model (+ HF files)
      eva_vit_tiny.pth                ViT state dict, eva_vit_g key names
      qformer_tiny.pth                {"model": {"Qformer.*", "query_tokens", "ln_vision.*"}} (BLIP-2 format)
      shards/laion/{00000..00003}.tar     stage 1, img2dataset layout (KEY.jpg, KEY.json, KEY.txt)
      shards/cc_sbu/{00000..00003}.tar    stage 1, second source (another caption habit)
      cc_sbu_align/filter_cap.json, image/<id>.jpg    stage 2, detailed descriptions
      heldout/labels.json, image/<id>.jpg             evaluation: attribute labels and reference texts

The folder is assembled under ``<out>.partial`` and renamed when complete; an existing complete world with the
same seed and size is kept unless ``--force``. The pretrainings show a progress bar with the time left on an
interactive terminal and log their first, last and every quarter step. ``--llm-family qwen2`` also writes
``tiny_world/qwen2/``, a tiny LLM of that family (tokenizer and causal LM in its Hugging Face format, pretrained on
the same language in the family's chat format) for the ``tiny_qwen2`` model type; it is built only when asked
for, and kept when present.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import os
import random
import shutil
import tarfile
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import OmegaConf

from minigpt4.tiny import language, towers, world

logger = logging.getLogger(__name__)

DEFAULT_OUT = "tiny_world"
MODEL_CONFIG = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "models", "minigpt4_tiny.yaml"
)
NUM_SHARDS = 4  # per stage-1 source; the tiny train configs name shards/<source>/{00000..00003}.tar
# 2: one attribute per query, the LLM trained on the model's segment-wise tokenization; 3: a detailed answer follows
# the richer image stand-in, short VQA / POPE questions in the LLM's corpus (a cached world of an older version is
# rebuilt)
FORMAT_VERSION = 3


@dataclass
class WorldSize:
    """How much of everything to make (the defaults are the quick start's world; :meth:`small` is the tests')."""

    stage1_per_source: int = 2000
    align: int = 500
    heldout: int = 200
    lm_documents: int = 8000
    vocab_size: int = 1024
    lm: language.LMConfig = field(default_factory=language.LMConfig)
    towers: towers.TowerConfig = field(default_factory=towers.TowerConfig)

    @classmethod
    def small(cls) -> WorldSize:
        return cls(
            stage1_per_source=400,
            align=120,
            heldout=60,
            lm_documents=3000,
            lm=language.LMConfig(steps=500),
            towers=towers.TowerConfig(images=1500, steps=400),
        )


# ----------------------------------------------------------------------------------------------------------
# writers
# ----------------------------------------------------------------------------------------------------------


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def write_shards(out_dir: str, source: str, n: int, image_size: int, rng: random.Random) -> None:
    """``n`` captioned scenes as ``NUM_SHARDS`` img2dataset-style tar shards in ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    per_shard = -(-n // NUM_SHARDS)
    for shard in range(NUM_SHARDS):
        with tarfile.open(os.path.join(out_dir, f"{shard:05d}.tar"), "w", format=tarfile.USTAR_FORMAT) as tar:
            for i in range(shard * per_shard, min(n, (shard + 1) * per_shard)):
                key = f"{shard:05d}{i % per_shard:04d}"
                scene = world.sample_scene(rng)
                caption = world.describe(scene, source, rng)
                meta = {
                    "caption": caption,
                    "key": key,
                    "status": "success",
                    "url": f"tiny://{source}/{key}.jpg",
                    "width": image_size,
                    "height": image_size,
                    "original_width": image_size,
                    "original_height": image_size,
                }
                _add(tar, f"{key}.jpg", world.jpeg_bytes(world.render(scene, image_size, rng)))
                _add(tar, f"{key}.json", json.dumps(meta).encode())
                _add(tar, f"{key}.txt", caption.encode())


def write_align(out_dir: str, n: int, image_size: int, rng: random.Random) -> None:
    """The stage-2 folder: ``filter_cap.json`` (detailed descriptions) and ``image/<id>.jpg``."""
    os.makedirs(os.path.join(out_dir, "image"), exist_ok=True)
    annotations = []
    for i in range(n):
        scene = world.sample_scene(rng)
        image_id = str(i)
        world.render(scene, image_size, rng).save(os.path.join(out_dir, "image", f"{image_id}.jpg"), quality=92)
        annotations.append({"image_id": image_id, "caption": world.describe(scene, "detailed", rng)})
    with open(os.path.join(out_dir, "filter_cap.json"), "w", encoding="utf-8") as f:
        json.dump({"annotations": annotations}, f, indent=1)


def write_heldout(out_dir: str, n: int, image_size: int, rng: random.Random) -> None:
    """Evaluation images with their attribute labels and one reference text per style."""
    os.makedirs(os.path.join(out_dir, "image"), exist_ok=True)
    items = []
    for i in range(n):
        scene = world.sample_scene(rng)
        image = f"image/{i}.jpg"
        world.render(scene, image_size, rng).save(os.path.join(out_dir, image), quality=92)
        texts = {style: world.describe(scene, style, rng) for style in ("laion", "cc_sbu", "detailed")}
        items.append({"id": str(i), "image": image, "labels": scene.labels(), "captions": texts})
    labels = {"attributes": {k: list(v) for k, v in world.ATTRIBUTES.items()}, "items": items}
    with open(os.path.join(out_dir, "labels.json"), "w", encoding="utf-8") as f:
        json.dump(labels, f, indent=1)


def save_towers(model: towers.Towers, out_dir: str) -> None:
    torch.save(model.vit_state_dict(), os.path.join(out_dir, "eva_vit_tiny.pth"))
    torch.save(model.blip2_checkpoint(), os.path.join(out_dir, "qformer_tiny.pth"))


# ----------------------------------------------------------------------------------------------------------
# the build
# ----------------------------------------------------------------------------------------------------------


def available_cpus() -> int:
    """How many CPUs this process may run on (its affinity mask, e.g. under ``taskset`` or a container limit)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def is_complete(out: str, seed: int, size_name: str) -> bool:
    path = os.path.join(out, "world.json")
    if not os.path.isfile(path):
        return False
    with open(path, encoding="utf-8") as f:
        info = json.load(f)
    return info.get("seed") == seed and info.get("size") == size_name and info.get("version") == FORMAT_VERSION


def build(
    out: str, seed: int = 0, small: bool = False, force: bool = False, size: WorldSize | None = None
) -> dict[str, Any]:
    """Build the world into ``out`` (see the module docstring); return the contents of ``world.json``.

    ``size`` overrides the preset sizes (``small`` or the default), e.g. for a quick test world.
    """
    size_name = "custom" if size is not None else "small" if small else "default"
    if not force and size is None and is_complete(out, seed, size_name):
        logger.info("%s already holds the %s world of seed %d: kept (use --force to rebuild)", out, size_name, seed)
        with open(os.path.join(out, "world.json"), encoding="utf-8") as f:
            return json.load(f)
    size = size or (WorldSize.small() if small else WorldSize())
    model_cfg = OmegaConf.load(MODEL_CONFIG).model
    image_size = model_cfg.image_size
    tmp = out.rstrip("/") + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    start = time.time()
    stats: dict[str, Any] = {}

    write_shards(os.path.join(tmp, "shards", "laion"), "laion", size.stage1_per_source, image_size, random.Random(seed))
    write_shards(
        os.path.join(tmp, "shards", "cc_sbu"), "cc_sbu", size.stage1_per_source, image_size, random.Random(seed + 1)
    )
    write_align(os.path.join(tmp, "cc_sbu_align"), size.align, image_size, random.Random(seed + 2))
    write_heldout(os.path.join(tmp, "heldout"), size.heldout, image_size, random.Random(seed + 3))
    stats["images_seconds"] = round(time.time() - start, 1)
    logger.info("images and texts written (%.0fs)", time.time() - start)

    # the pretrainings run one after the other, each on all ``threads`` (same seed and threads, same bytes)
    tower_model, stats["towers"] = towers.pretrain_towers(model_cfg, size.towers, seed + 6)
    save_towers(tower_model, tmp)
    logger.info("towers pretrained (%.0fs)", time.time() - start)

    documents = language.corpus(size.lm_documents, seed + 4, language.alignment_instructions())
    llama_dir = os.path.join(tmp, "llama")
    language.train_tokenizer([seg for doc in documents for seg in doc], llama_dir, size.vocab_size)
    logger.info("tokenizer trained (%.0fs)", time.time() - start)
    stats["lm"] = language.pretrain_lm(documents, llama_dir, llama_dir, size.lm, seed + 5)

    info = {
        "version": FORMAT_VERSION,
        "seed": seed,
        "size": size_name,
        "image_size": image_size,
        "threads": torch.get_num_threads(),
        "attributes": {k: list(v) for k, v in world.ATTRIBUTES.items()},
        "counts": {
            "laion": size.stage1_per_source,
            "cc_sbu": size.stage1_per_source,
            "cc_sbu_align": size.align,
            "heldout": size.heldout,
        },
        "sizes": dataclasses.asdict(size),
        "stats": _rounded(stats),
    }
    with open(os.path.join(tmp, "world.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    logger.info("tiny world written to %s in %.0fs", out, time.time() - start)
    return info


def build_family_llm(
    out_dir: str, llm_family: str, seed: int = 0, small: bool = False, size: WorldSize | None = None
) -> dict[str, Any]:
    """The tiny LLM of ``llm_family`` in ``out_dir`` (e.g. ``tiny_world/qwen2``), sized like the world's LLaMA
    (``size`` overrides the preset); a complete one of the same seed, size and format is kept. Returns its
    ``llm.json``."""
    size_name = "custom" if size is not None else "small" if small else "default"
    info_path = os.path.join(out_dir, "llm.json")
    if size is None and os.path.isfile(info_path):
        with open(info_path, encoding="utf-8") as f:
            info = json.load(f)
        if (info.get("version"), info.get("seed"), info.get("size")) == (FORMAT_VERSION, seed, size_name):
            logger.info("%s already holds the %s %s LLM of seed %d: kept", out_dir, size_name, llm_family, seed)
            return info
    size = size or (WorldSize.small() if small else WorldSize())
    tmp = out_dir.rstrip("/") + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    stats = language.build_llm(llm_family, tmp, size.lm_documents, size.vocab_size, size.lm, seed)
    info = {"version": FORMAT_VERSION, "family": llm_family, "seed": seed, "size": size_name, "stats": _rounded(stats)}
    with open(os.path.join(tmp, "llm.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    logger.info("tiny %s LLM written to %s", llm_family, out_dir)
    return info


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Build the tiny world (data, tokenizer, tiny LLaMA, towers).")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument("--seed", type=int, default=0, help="everything is a function of this seed")
    parser.add_argument("--small", action="store_true", help="a smaller, faster world (for tests)")
    parser.add_argument("--force", action="store_true", help="rebuild even if a complete world is there")
    parser.add_argument(
        "--llm-family",
        choices=sorted(set(language.TINY_FAMILIES) - {"llama"}),
        help="also build a tiny LLM of this family into <out>/<family> (for its tiny model type, e.g. tiny_qwen2)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help=f"torch CPU threads (default {available_cpus()}: the CPUs this process may use); the world is the "
        "same, byte for byte, for the same seed and threads",
    )
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    threads = args.threads or available_cpus()
    torch.set_num_threads(threads)
    logger.info("%d torch threads%s", threads, "" if args.threads else " (the CPUs this process may use)")
    info = build(args.out, seed=args.seed, small=args.small, force=args.force)
    if args.llm_family:
        family_dir = os.path.join(args.out, args.llm_family)
        info["llm_families"] = {args.llm_family: build_family_llm(family_dir, args.llm_family, args.seed, args.small)}
    return info


if __name__ == "__main__":
    main()
