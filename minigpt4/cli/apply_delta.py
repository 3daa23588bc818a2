"""Vicuna v0 from LLaMA + the published delta (``vicuna-7b-delta-v0`` / ``vicuna-13b-delta-v0``).

    python -m minigpt4.cli.apply_delta --base LLAMA_HF_DIR --delta DELTA_DIR --target OUT_DIR

The Vicuna v0 weights were released as a difference to LLaMA. This does what the published merge for v0 does:

- every weight of the target is ``base + delta``, both cast to ``--dtype`` first (float16 by default, as published);
- the delta has one more token row than LLaMA (32001 vs 32000: the ``[PAD]`` token added for fine-tuning) in
  ``model.embed_tokens.weight`` and ``lm_head.weight``: the base is padded with zero rows, so the extra rows are the
  delta's own; any other difference of shape is an error;
- the target takes the delta's ``config.json`` (with ``torch_dtype`` set to the dtype written), its tokenizer files
  and ``generation_config.json``; the base's tokenizer is not used.

Both inputs are Hugging Face folders (``model.safetensors``, ``model-*.safetensors`` or ``pytorch_model*.bin``
shards, with or without an index); the LLaMA weights must first be converted to that format (transformers'
``convert_llama_weights_to_hf.py``). Everything is checked from the file headers before any data is read. The merge
then streams one tensor at a time, writing it straight into ``model-XXXXX-of-XXXXX.safetensors`` shards with a
``model.safetensors.index.json``, so memory stays at a few tensors (the largest is the embedding, ~330 MB for 13B in
float16) instead of copies of the whole model. The target is assembled in ``.<target>.partial`` next to it and
renamed when complete, so an interrupted merge never leaves a folder that looks finished. The rotary
``inv_freq`` buffers that old conversions saved are dropped (transformers recomputes them).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import struct
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

logger = logging.getLogger(__name__)

TORCH_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
SAFETENSORS_DTYPES = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32"}
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
WEIGHT_PATTERNS = ("model.safetensors", "model-*.safetensors", "pytorch_model.bin", "pytorch_model-*.bin")
# the tensors that grow by the token rows the delta adds (the procedure resizes exactly these)
VOCAB_TENSORS = ("model.embed_tokens.weight", "lm_head.weight")
SKIPPED_SUFFIX = ".rotary_emb.inv_freq"  # a buffer old conversions saved; recomputed from the config on load
TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
SIDE_FILES = (*TOKENIZER_FILES, "added_tokens.json", "generation_config.json")
# config keys that fix the shapes of every weight but the vocabulary: base and delta must agree on them
SHAPE_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads")
LLM_SIZES = {4096: "7B", 5120: "13B", 6656: "33B", 8192: "65B"}
LFS_POINTER = b"version https://git-lfs"
DEFAULT_SHARD_SIZE = "5GB"


class DeltaError(ValueError):
    """An input that cannot be merged; the message names the folder, file or tensor and what to do."""


# ----------------------------------------------------------------------------------------------------------
# reading: a folder's tensors, one at a time
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorInfo:
    """Where a tensor is and its shape, read from the file's header (no data)."""

    file: Path
    shape: tuple[int, ...]


def _check_not_lfs_pointer(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(len(LFS_POINTER))
    if head == LFS_POINTER:
        raise DeltaError(
            f"{path} is a git-lfs pointer, not the weights: run `git lfs pull` in {path.parent} (or clone with git-lfs)"
        )


def _load_bin(path: Path) -> dict[str, torch.Tensor]:
    """A ``.bin`` state dict memory-mapped: tensors are read from disk only when used."""
    try:
        return torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception as err:  # any unreadable file becomes one clear message
        raise DeltaError(
            f"{path}: not a PyTorch state dict that can be memory-mapped ({err}); files saved by torch < 1.6 "
            "must first be re-saved with a recent torch"
        ) from err


class WeightFolder:
    """The weights of a Hugging Face model folder, indexed from the headers and read one tensor at a time.

    Each read opens the file, copies the tensor out and closes it again, so no mapping of a whole shard stays in
    the process's memory between tensors.

    Args:
        folder: the model folder.
        role: ``"base"`` or ``"delta"``, for messages.
    """

    def __init__(self, folder: Path, role: str) -> None:
        self.folder = folder
        self.role = role
        self.tensors: dict[str, TensorInfo] = {}
        self.skipped: list[str] = []
        for file in self._weight_files():
            _check_not_lfs_pointer(file)
            for name, shape in self._header(file):
                if name.endswith(SKIPPED_SUFFIX):
                    self.skipped.append(name)
                    continue
                if name in self.tensors:
                    raise DeltaError(f"{role} {folder}: tensor {name} is in both {self.tensors[name].file} and {file}")
                self.tensors[name] = TensorInfo(file, shape)

    def _weight_files(self) -> list[Path]:
        for index in WEIGHT_INDEXES:
            path = self.folder / index
            if path.is_file():
                files = sorted({self.folder / f for f in _read_json(path).get("weight_map", {}).values()})
                missing = [str(f) for f in files if not f.is_file()]
                if missing:
                    raise DeltaError(f"{self.role} {self.folder}: {index} names missing files: {', '.join(missing)}")
                if files:
                    return files
        for pattern in WEIGHT_PATTERNS:
            files = sorted(self.folder.glob(pattern))
            if files:
                return files
        raise DeltaError(
            f"{self.role} {self.folder}: no weights found (expected {', '.join(WEIGHT_PATTERNS)}, "
            "as Hugging Face save_pretrained writes them)"
        )

    def _header(self, file: Path) -> list[tuple[str, tuple[int, ...]]]:
        if file.suffix == ".safetensors":
            from safetensors import safe_open

            try:
                with safe_open(str(file), framework="pt") as f:
                    return [(name, tuple(f.get_slice(name).get_shape())) for name in f.keys()]
            except Exception as err:  # a corrupt or truncated file
                raise DeltaError(f"{self.role} {file}: not a readable safetensors file ({err})") from err
        header = []
        for name, tensor in _load_bin(file).items():
            if not isinstance(tensor, torch.Tensor):
                raise DeltaError(f"{self.role} {file}: entry {name} is not a tensor")
            header.append((name, tuple(tensor.shape)))
        return header

    def read(self, name: str, dtype: torch.dtype) -> torch.Tensor:
        """Tensor ``name`` as a ``dtype`` tensor of its own (never a view of the file), free to change in place."""
        file = self.tensors[name].file
        if file.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(file), framework="pt") as f:
                tensor = f.get_tensor(name)  # a copy already
            mapped = False
        else:
            tensor, mapped = _load_bin(file)[name], True
        if not tensor.is_floating_point():
            raise DeltaError(f"{self.role} {file}: tensor {name} is {tensor.dtype}, not a floating-point weight")
        return tensor.to(dtype, copy=mapped)


# ----------------------------------------------------------------------------------------------------------
# checks: folders, configs, names and shapes (all before any data is read)
# ----------------------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise DeltaError(f"{path}: cannot read it as JSON ({err})") from err


def check_folder(path: Path, role: str) -> dict[str, Any]:
    """``path`` is a Hugging Face LLaMA folder; returns its config."""
    if not path.exists():
        raise DeltaError(f"{role} folder {path} does not exist")
    if not path.is_dir():
        raise DeltaError(f"{role} {path} is not a folder: give the Hugging Face model folder")
    config = path / "config.json"
    if not config.is_file():
        if (path / "params.json").is_file() or list(path.glob("consolidated.*.pth")):
            raise DeltaError(
                f"{role} {path} holds the original LLaMA checkpoint (params.json, consolidated.*.pth): convert it "
                "to the Hugging Face format first with transformers' convert_llama_weights_to_hf.py "
                "(src/transformers/models/llama/ in the transformers repository) and give its output folder"
            )
        raise DeltaError(f"{role} {path} has no config.json: give a Hugging Face model folder (save_pretrained)")
    cfg = _read_json(config)
    if cfg.get("model_type") != "llama":
        raise DeltaError(
            f"{role} {config}: model_type is {cfg.get('model_type')!r}, not 'llama': the Vicuna v0 delta applies to "
            "LLaMA (7B or 13B) in the Hugging Face format"
        )
    return cfg


def _shape_keys(cfg: dict[str, Any]) -> dict[str, Any]:
    keys = {k: cfg.get(k) for k in SHAPE_KEYS}
    if keys["num_key_value_heads"] is None:  # older configs: no grouped-query attention
        keys["num_key_value_heads"] = keys["num_attention_heads"]
    return keys


def check_configs(base_cfg: dict[str, Any], delta_cfg: dict[str, Any], base: Path, delta: Path) -> None:
    """Base and delta describe the same LLaMA size."""
    b, d = _shape_keys(base_cfg), _shape_keys(delta_cfg)
    diff = [f"{k} {b[k]} vs {d[k]}" for k in SHAPE_KEYS if b[k] != d[k]]
    if diff:
        sizes = (LLM_SIZES.get(b["hidden_size"], "?"), LLM_SIZES.get(d["hidden_size"], "?"))
        raise DeltaError(
            f"the base {base} (LLaMA-{sizes[0]}) and the delta {delta} (LLaMA-{sizes[1]}) are different models "
            f"({'; '.join(diff)}, base vs delta): use the LLaMA of the size the delta was made for"
        )


def _names(names: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(sorted(names)[:limit])
    return shown + (f" (and {len(names) - limit} more)" if len(names) > limit else "")


def check_vocab_rows(folder: WeightFolder, cfg: dict[str, Any]) -> int:
    """Both vocabulary tensors exist and have ``vocab_size`` rows; returns it."""
    missing = [n for n in VOCAB_TENSORS if n not in folder.tensors]
    if missing:
        raise DeltaError(
            f"{folder.role} {folder.folder} is not a LlamaForCausalLM checkpoint: no {', '.join(missing)} "
            f"(its tensors start with {_names(list(folder.tensors), 3)})"
        )
    rows = {folder.tensors[n].shape[0] for n in VOCAB_TENSORS}
    if rows != {cfg.get("vocab_size")}:
        raise DeltaError(
            f"{folder.role} {folder.folder}: config.json says vocab_size {cfg.get('vocab_size')} but "
            + ", ".join(f"{n} has {folder.tensors[n].shape[0]} rows" for n in VOCAB_TENSORS)
        )
    return rows.pop()


def plan_merge(base: WeightFolder, delta: WeightFolder) -> list[tuple[str, tuple[int, ...]]]:
    """The target's tensors in the base's order with their shapes; every mismatch the procedure refuses fails."""
    only_base = [n for n in base.tensors if n not in delta.tensors]
    only_delta = [n for n in delta.tensors if n not in base.tensors]
    if only_base or only_delta:
        parts = [f"only in the base {base.folder}: {_names(only_base)}"] if only_base else []
        parts += [f"only in the delta {delta.folder}: {_names(only_delta)}"] if only_delta else []
        raise DeltaError("base and delta do not hold the same tensors; " + "; ".join(parts))
    plan = []
    for name, info in base.tensors.items():
        b, d = info.shape, delta.tensors[name].shape
        extra_rows = name in VOCAB_TENSORS and len(b) == len(d) == 2 and b[1] == d[1] and d[0] >= b[0]
        if b != d and not extra_rows:
            raise DeltaError(
                f"tensor {name}: base shape {list(b)} ({info.file}) vs delta shape {list(d)} "
                f"({delta.tensors[name].file}); only the vocabulary tensors may have more rows in the delta"
            )
        plan.append((name, d))
    return plan


def parse_size(text: str) -> int:
    """``"5GB"``, ``"500MB"``, ``"2GiB"`` or a number of bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*", text, flags=re.IGNORECASE)
    if not match:
        raise DeltaError(f"--max-shard-size {text!r}: expected a size such as 5GB, 500MB or a number of bytes")
    unit = (match.group(2) or "B").upper()
    scale = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
    scale.update({"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40})
    return max(1, int(float(match.group(1)) * scale[unit]))


def plan_shards(
    plan: list[tuple[str, tuple[int, ...]]], itemsize: int, max_bytes: int
) -> list[list[tuple[str, tuple[int, ...]]]]:
    """Consecutive groups of at most ``max_bytes`` (a larger tensor gets a shard of its own)."""
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, shape in plan:
        nbytes = _numel(shape) * itemsize
        if shards[-1] and size + nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append((name, shape))
        size += nbytes
    return shards


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


# ----------------------------------------------------------------------------------------------------------
# merging and writing
# ----------------------------------------------------------------------------------------------------------


def merge_tensor(base: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``base + delta``, computed in place in one of them; a base with fewer rows is first padded with zero rows
    (the delta's extra tokens)."""
    if base.shape == delta.shape:
        return base.add_(delta)
    rows = base.shape[0]
    delta[:rows] += base
    delta[rows:] += 0  # the zero-padded rows of the procedure: 0 + delta (so -0.0 becomes 0.0 as there)
    return delta


def write_safetensors_streaming(
    path: Path, entries: list[tuple[str, tuple[int, ...]]], dtype: torch.dtype, tensors: Iterator[torch.Tensor]
) -> None:
    """Write a safetensors file whose header is known in advance, one tensor at a time from ``tensors``.

    ``tensors`` yields the tensors of ``entries`` in order; each must have the announced shape and ``dtype``.
    """
    itemsize = torch.empty((), dtype=dtype).element_size()
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in entries:
        end = offset + _numel(shape) * itemsize
        header[name] = {"dtype": SAFETENSORS_DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, end]}
        offset = end
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for (name, shape), tensor in zip(entries, tensors, strict=True):
            if tuple(tensor.shape) != shape or tensor.dtype != dtype:
                raise RuntimeError(f"{name}: produced {tuple(tensor.shape)} {tensor.dtype}, announced {shape} {dtype}")
            f.write(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().data)


def copy_side_files(delta: Path, out: Path, dtype_name: str) -> list[str]:
    """The delta's config (``torch_dtype`` set to what was written), tokenizer and generation config."""
    cfg = _read_json(delta / "config.json")
    dtype_keys = [k for k in ("torch_dtype", "dtype") if k in cfg] or ["torch_dtype"]
    for key in dtype_keys:
        cfg[key] = dtype_name
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    copied = ["config.json"]
    for name in SIDE_FILES:
        if (delta / name).is_file():
            shutil.copyfile(delta / name, out / name)
            copied.append(name)
    tok_cfg = out / "tokenizer_config.json"
    if tok_cfg.is_file():  # early conversions spelled the class LLaMATokenizer, which transformers cannot load
        tok = _read_json(tok_cfg)
        if tok.get("tokenizer_class") == "LLaMATokenizer":
            tok["tokenizer_class"] = "LlamaTokenizer"
            tok_cfg.write_text(json.dumps(tok, indent=2) + "\n", encoding="utf-8")
            logger.info("tokenizer_config.json: tokenizer_class LLaMATokenizer renamed LlamaTokenizer")
    return copied


def _check_target(target: Path, base: Path, delta: Path, overwrite: bool) -> None:
    resolved = target.resolve()
    for role, src in (("base", base), ("delta", delta)):
        src = src.resolve()
        if resolved == src or src in resolved.parents or resolved in src.parents:
            raise DeltaError(f"--target {target} would overwrite the {role} {src}: choose another folder")
    if target.exists() and not overwrite:
        raise DeltaError(f"--target {target} already exists: choose another folder or pass --overwrite to replace it")


def _check_disk_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise DeltaError(f"{folder}: {needed / 1e9:.1f} GB are needed for the merged weights, {free / 1e9:.1f} GB free")


def _merged_tensors(
    base: WeightFolder, delta: WeightFolder, plan: list[tuple[str, tuple[int, ...]]], dtype: torch.dtype, bar: tqdm
) -> Iterator[torch.Tensor]:
    for name, _ in plan:
        yield merge_tensor(base.read(name, dtype), delta.read(name, dtype))
        bar.update(1)


def apply_delta(
    base: str | os.PathLike[str],
    delta: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    dtype: str = "float16",
    overwrite: bool = False,
    max_shard_size: str = DEFAULT_SHARD_SIZE,
    progress: bool = True,
) -> Path:
    """Write ``base + delta`` to ``target`` as the published Vicuna v0 merge does (see the module docstring).

    Args:
        base: the LLaMA folder (Hugging Face format).
        delta: the delta folder (``vicuna-*-delta-v0``).
        target: the folder to create.
        dtype: ``float16`` (published), ``bfloat16`` or ``float32``: both sides are cast to it, then added.
        overwrite: replace an existing ``target`` (otherwise it is an error).
        max_shard_size: the largest shard file, e.g. ``"5GB"``.
        progress: show a progress bar over the tensors.

    Returns:
        The target folder.

    Raises:
        DeltaError: a missing folder, a base that is not LLaMA, different tensors or shapes, an existing target.
    """
    if dtype not in TORCH_DTYPES:
        raise DeltaError(f"--dtype {dtype!r}: choose one of {', '.join(TORCH_DTYPES)}")
    base, delta, target = Path(base), Path(delta), Path(target)
    merge = check_inputs(base, delta, target, overwrite)
    itemsize = torch.empty((), dtype=TORCH_DTYPES[dtype]).element_size()
    shards = plan_shards(merge.plan, itemsize, parse_size(max_shard_size))
    total = sum(_numel(shape) for _, shape in merge.plan) * itemsize
    target.parent.mkdir(parents=True, exist_ok=True)
    _check_disk_space(target.parent, total)
    partial = target.parent / f".{target.name}.partial"
    if partial.exists():
        logger.info("removing %s, left by an interrupted merge", partial)
        shutil.rmtree(partial)
    partial.mkdir()
    logger.info("merging %d tensors (%.2f GB in %s) into %d shard(s)", len(merge.plan), total / 1e9, dtype, len(shards))
    write_merged(merge, shards, TORCH_DTYPES[dtype], partial, total, progress)
    copied = copy_side_files(delta, partial, dtype)
    if target.exists():  # --overwrite, checked above
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    partial.rename(target)
    logger.info("wrote %s: %d shard(s), the index, %s", target, len(shards), ", ".join(copied))
    return target


@dataclass
class Merge:
    """Checked inputs: the two folders' tensors and the target's tensors in order with their shapes."""

    base: WeightFolder
    delta: WeightFolder
    plan: list[tuple[str, tuple[int, ...]]]


def check_inputs(base: Path, delta: Path, target: Path, overwrite: bool) -> Merge:
    """Every check that needs no tensor data: folders, configs, tokenizer, target, tensor names and shapes."""
    base_cfg, delta_cfg = check_folder(base, "base"), check_folder(delta, "delta")
    check_configs(base_cfg, delta_cfg, base, delta)
    if not any((delta / name).is_file() for name in ("tokenizer.model", "tokenizer.json")):
        raise DeltaError(f"delta {delta} has no tokenizer (tokenizer.model or tokenizer.json): the target uses it")
    _check_target(target, base, delta, overwrite)
    base_w, delta_w = WeightFolder(base, "base"), WeightFolder(delta, "delta")
    base_rows, delta_rows = check_vocab_rows(base_w, base_cfg), check_vocab_rows(delta_w, delta_cfg)
    plan = plan_merge(base_w, delta_w)
    if base_rows != delta_rows:
        logger.info("vocabulary: base %d rows, delta %d: the extra rows are the delta's", base_rows, delta_rows)
    if base_w.skipped or delta_w.skipped:
        logger.info("dropped %d rotary inv_freq buffers (recomputed on load)", len(base_w.skipped + delta_w.skipped))
    return Merge(base_w, delta_w, plan)


def write_merged(
    merge: Merge,
    shards: list[list[tuple[str, tuple[int, ...]]]],
    dtype: torch.dtype,
    out: Path,
    total: int,
    progress: bool,
) -> None:
    """The merged tensors as ``model-XXXXX-of-XXXXX.safetensors`` shards and ``model.safetensors.index.json``."""
    weight_map: dict[str, str] = {}
    with tqdm(total=len(merge.plan), unit="tensor", desc="apply delta", disable=not progress) as bar:
        for i, entries in enumerate(shards, start=1):
            file = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            tensors = _merged_tensors(merge.base, merge.delta, entries, dtype, bar)
            write_safetensors_streaming(out / file, entries, dtype, tensors)
            weight_map.update({name: file for name, _ in entries})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m minigpt4.cli.apply_delta",
        description="Make Vicuna v0 from LLaMA (Hugging Face format) and the published vicuna-*-delta-v0 weights.",
    )
    parser.add_argument("--base", required=True, help="LLaMA folder in the Hugging Face format (7B or 13B)")
    parser.add_argument("--delta", required=True, help="the delta folder, e.g. a clone of lmsys/vicuna-13b-delta-v0")
    parser.add_argument("--target", required=True, help="the folder to write (model.llama_model then points at it)")
    parser.add_argument("--dtype", default="float16", choices=list(TORCH_DTYPES), help="default: float16, as published")
    parser.add_argument("--overwrite", action="store_true", help="replace --target if it exists")
    parser.add_argument("--max-shard-size", default=DEFAULT_SHARD_SIZE, help="largest shard file (default: 5GB)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from minigpt4.common.logger import setup_logger

    args = parse_args(argv)
    setup_logger(rank=0)
    try:
        apply_delta(
            args.base,
            args.delta,
            args.target,
            dtype=args.dtype,
            overwrite=args.overwrite,
            max_shard_size=args.max_shard_size,
            progress=not args.no_progress,
        )
    except DeltaError as err:
        raise SystemExit(f"apply_delta: {err}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
