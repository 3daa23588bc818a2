"""The pre-flight check: everything about a job's weights, data and memory that can be known before a GPU hour.

:func:`run_checks` takes a validated :class:`~minigpt4.common.config.Config` and returns a :class:`Report`: one
:class:`Finding` per check, ``OK`` / ``WARN`` / ``FAIL``, each FAIL and WARN with what to do about it. It reads
headers, not weights: safetensors headers through ``safe_open``, ``.pth`` files through
``torch.load(mmap=True)`` (tensors are mapped, not read); the expected layouts come from our own modules built on
the ``meta`` device (which is the layout the released files have, see ``tests/models/test_layout.py``). Cheap
enough to run at the start of every ``train.py`` and ``demo.py`` (:func:`check_or_raise`).

Checks, in order:

- ``paths``: every path key exists (:meth:`Config.path_report`), with the key and the file that set it;
- ``model.vit_path``: an EVA ViT state dict with the names and shapes of the configured size;
- ``model.q_former_model``: a BLIP-2 checkpoint holding the Q-Former, ``query_tokens`` and ``ln_vision``;
- ``model.llama_model``: config, weights and tokenizer agree (embedding rows, tokenizer size, bos/eos, pad ``$$``);
- ``model.ckpt``: ``llama_proj`` fits the LLM width and the variant; keys that would not load;
- ``family``: model type, prompt template, end symbol and checkpoint agree on one LLM family (:data:`FAMILIES`);
- ``datasets.<name>``: each source builds and one sample decodes (shard patterns, ``cc_sbu_align`` images);
- ``low_resource``: 8-bit loading has CUDA and bitsandbytes;
- ``memory``: :func:`estimate_memory` against the free memory of the device.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

import torch

from minigpt4.common.constants import IMAGE_PLACEHOLDER, LLAMA2_PATCH_GROUP, PAD_TOKEN

logger = logging.getLogger(__name__)

OK, WARN, FAIL = "OK", "WARN", "FAIL"
SHOW = 5  # names shown of a longer list
SKIP_ENV = "MINIGPT4_SKIP_CHECK"
GIB = 1024**3
# LLM widths of the published sizes (the name a user knows a checkpoint by)
LLM_SIZES = {4096: "7B", 5120: "13B", 6656: "33B", 8192: "65B/70B"}
URL_PREFIXES = ("http://", "https://", "pipe:", "s3://", "gs://")


@dataclasses.dataclass
class Finding:
    """One line of the report: ``status`` (OK, WARN, FAIL), the ``check`` (usually a config key), what was found
    and, for WARN and FAIL, what to do."""

    status: str
    check: str
    message: str
    fix: str = ""

    def line(self, width: int = 24) -> str:
        fix = f" -> {self.fix}" if self.fix and self.status != OK else ""
        return f"{self.status:<4}  {self.check:<{width}} {self.message}{fix}"


@dataclasses.dataclass
class Report:
    """The findings of one check run, in order."""

    findings: list[Finding] = dataclasses.field(default_factory=list)

    def add(self, status: str, check: str, message: str, fix: str = "") -> Finding:
        finding = Finding(status, check, message, fix)
        self.findings.append(finding)
        return finding

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.status == FAIL]

    @property
    def ok(self) -> bool:
        return not self.failures

    def table(self) -> str:
        width = max([len(f.check) for f in self.findings] + [5])
        lines = [f.line(width) for f in self.findings]
        counts = {s: sum(f.status == s for f in self.findings) for s in (OK, WARN, FAIL)}
        lines.append(f"pre-flight: {counts[OK]} OK, {counts[WARN]} WARN, {counts[FAIL]} FAIL")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# reading weight files without reading the weights
# ----------------------------------------------------------------------------------------------------------


def load_mapped(path: str) -> Any:
    """``torch.load`` a ``.pth`` memory-mapped (nothing is read until used); legacy (non-zip) files are read."""
    for kwargs in ({"mmap": True, "weights_only": True}, {"mmap": True, "weights_only": False}, {}):
        try:
            return torch.load(path, map_location="cpu", **{"weights_only": False, **kwargs})
        except RuntimeError as err:
            if "mmap" not in str(err) and "zip" not in str(err):
                raise
        except Exception as err:  # an unpickling refusal of weights_only: try the next way
            if "weights_only" not in str(err) and "Unpickl" not in type(err).__name__:
                raise
    raise ValueError(f"{path}: not a torch checkpoint")


def state_of(obj: Any) -> dict[str, Any] | None:
    """The state dict in a loaded checkpoint: ``obj["model"]`` when present, else ``obj`` itself."""
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    return obj if isinstance(obj, dict) else None


def shape_of(value: Any) -> tuple[int, ...] | None:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def hf_weight_shapes(folder: str) -> dict[str, tuple[int, ...]]:
    """Names and shapes of a Hugging Face folder's weights, from the safetensors headers (or mapped .bin files)."""
    from safetensors import safe_open

    names = sorted(os.listdir(folder))
    files = [n for n in names if n.endswith(".safetensors")]
    shapes: dict[str, tuple[int, ...]] = {}
    for name in files:
        with safe_open(os.path.join(folder, name), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                shapes[key] = tuple(f.get_slice(key).get_shape())
    if files:
        return shapes
    for name in (n for n in names if n.endswith(".bin") and n.startswith("pytorch_model")):
        state = state_of(load_mapped(os.path.join(folder, name))) or {}
        shapes.update({k: shape_of(v) for k, v in state.items() if shape_of(v) is not None})
    return shapes


def compare_layout(
    found: dict[str, Any], expected: dict[str, torch.Tensor], allow_resize: Sequence[str] = ()
) -> tuple[list[str], list[str]]:
    """``(missing keys, shape mismatches "key: file [a] vs config [b]")`` of ``found`` against ``expected``.

    Keys in ``allow_resize`` may differ in their token count (dimension 1), as the ViT's ``pos_embed`` is
    interpolated at load time."""
    missing = [k for k in expected if k not in found]
    wrong = []
    for key, tensor in expected.items():
        shape = shape_of(found.get(key))
        if shape is None or shape == tuple(tensor.shape):
            continue
        if key in allow_resize and len(shape) == 3 and (shape[0], shape[2]) == (tensor.shape[0], tensor.shape[2]):
            continue
        wrong.append(f"{key}: file {list(shape)} vs config {list(tensor.shape)}")
    return missing, wrong


def listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:SHOW])
    return shown + (f" (and {len(items) - SHOW} more)" if len(items) > SHOW else "")


# ----------------------------------------------------------------------------------------------------------
# the expected modules, on the meta device
# ----------------------------------------------------------------------------------------------------------


def meta_vit(model_cfg: Any) -> tuple[torch.nn.Module, torch.nn.Module]:
    from minigpt4.models.blip2 import Blip2Base, vit_sizes

    return Blip2Base.init_vision_encoder(
        model_cfg.vit_model,
        model_cfg.image_size,
        0.0,
        False,
        model_cfg.vit_precision,
        device="meta",
        **vit_sizes(model_cfg),
    )


def meta_qformer(model_cfg: Any) -> tuple[torch.nn.Module, torch.nn.Parameter]:
    from minigpt4.models.blip2 import Blip2Base

    return Blip2Base.meta_qformer(model_cfg)


def meta_llm(llm_config: Any) -> torch.nn.Module:
    """The causal LM of ``llm_config`` on the meta device, of the family whose architecture its model_type is."""
    from minigpt4.models.llm_families import LLM_FAMILIES, transformers_class

    found = [f for f in LLM_FAMILIES.values() if f.architecture == llm_config.model_type]
    model_class = transformers_class(found[0].model_class if found else "LlamaForCausalLM")
    with torch.device("meta"):
        return model_class(llm_config)


def qformer_expected(model_cfg: Any) -> dict[str, torch.Tensor]:
    """What a BLIP-2 checkpoint must hold for this model: ``Qformer.*``, ``query_tokens``, ``ln_vision.*``."""
    from minigpt4.models.blip2 import LayerNorm

    qformer, query_tokens = meta_qformer(model_cfg)
    with torch.device("meta"):
        ln_vision = LayerNorm(model_cfg.vit_width)
    expected = {f"Qformer.{k}": v for k, v in qformer.state_dict().items()}
    expected["query_tokens"] = query_tokens
    expected.update({f"ln_vision.{k}": v for k, v in ln_vision.state_dict().items()})
    return expected


def proj_in_width(model_cfg: Any) -> int:
    """Input width of ``llama_proj``: the Q-Former width, or 4 ViT tokens side by side without a Q-Former."""
    return model_cfg.qformer_hidden_size if model_cfg.has_qformer else model_cfg.vit_width * LLAMA2_PATCH_GROUP


def size_name(hidden: int) -> str:
    return LLM_SIZES.get(hidden, f"hidden size {hidden}")


# ----------------------------------------------------------------------------------------------------------
# the checks
# ----------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _State:
    """What the checks learn on the way and share: the config, the report, which paths are unusable, the LLM."""

    cfg: Any
    report: Report
    bad_paths: set[str] = dataclasses.field(default_factory=set)
    llm_config: Any = None
    tokenizer: Any = None

    @property
    def model(self) -> Any:
        return self.cfg.model_cfg

    def usable(self, key: str) -> bool:
        """The path key is set and exists (a missing one has its FAIL line already)."""
        value = self.model.get(key.removeprefix("model."))
        return bool(value) and key not in self.bad_paths

    def resolve(self, key: str) -> str:
        from minigpt4.models.base_model import resolve_model_path

        return resolve_model_path(self.model.get(key.removeprefix("model.")), key)


def check_paths(state: _State) -> None:
    """Every path key of the config exists: one FAIL per missing path, with its key and the file that set it."""
    report = state.cfg.path_report()
    for key, _, problem in report:
        if problem:
            state.bad_paths.add(key)
            state.report.add(FAIL, key, problem, f"fix {key} in {state.cfg.origin_of(key)} or put the file there")
    if not state.bad_paths:
        state.report.add(OK, "paths", f"all {len(report)} path keys exist ({', '.join(k for k, _, _ in report)})")


def check_vit(state: _State) -> None:
    key = "model.vit_path"
    if not state.usable(key):
        return
    path = state.resolve(key)
    found = state_of(load_mapped(path))
    vit, _ = meta_vit(state.model)
    expected = vit.state_dict()
    sizes = "model.vit_width/vit_depth/vit_heads/vit_mlp_dim/vit_patch_size"
    if found is None:
        state.report.add(FAIL, key, f"{path} holds no state dict", "give eva_vit_g.pth (a plain ViT state dict)")
        return
    missing, wrong = compare_layout(found, expected, allow_resize=("pos_embed",))
    if wrong:
        state.report.add(
            FAIL,
            key,
            f"{path}: {len(wrong)} tensors have another shape than {sizes} give: {listed(wrong)}",
            f"the file is another ViT size: give the EVA ViT-G file (eva_vit_g.pth) or set {sizes} to its size",
        )
    if missing:
        state.report.add(
            FAIL,
            key,
            f"{path}: {len(missing)} of the ViT's {len(expected)} tensors are missing: {listed(missing)}",
            "this is not an EVA ViT state dict: give eva_vit_g.pth",
        )
    if not wrong and not missing:
        state.report.add(OK, key, f"EVA ViT state dict, {len(expected)} tensors as configured ({path})")


def check_qformer(state: _State) -> None:
    key = "model.q_former_model"
    if not state.model.has_qformer:
        return
    if not state.model.q_former_model:
        state.report.add(
            WARN,
            key,
            "not set: the Q-Former keeps its random initialisation",
            "set model.q_former_model to blip2_pretrained_flant5xxl.pth unless model.ckpt holds the Q-Former",
        )
        return
    if not state.usable(key):
        return
    path = state.resolve(key)
    found = state_of(load_mapped(path)) or {}
    expected = qformer_expected(state.model)
    missing, wrong = compare_layout(found, expected)
    fix = (
        "give the BLIP-2 checkpoint blip2_pretrained_flant5xxl.pth ({'model': {Qformer.*, query_tokens, ln_vision.*}})"
    )
    for part in ("query_tokens", "ln_vision.", "Qformer."):
        absent = [k for k in missing if k.startswith(part)]
        if absent:
            state.report.add(FAIL, key, f"{path} has no {part.rstrip('.')} ({listed(absent)})", fix)
    if wrong:
        sizes = "model.num_query_token/qformer_* and vit_width"
        state.report.add(FAIL, key, f"{path}: shapes differ from {sizes}: {listed(wrong)}", f"{fix}, or fix {sizes}")
    if not missing and not wrong:
        state.report.add(OK, key, f"BLIP-2 checkpoint with Q-Former, query_tokens and ln_vision ({path})")


def check_llm(state: _State) -> None:
    """Config, weights and tokenizer of the Hugging Face folder agree with each other and with ``model.llm_family``,
    and the tokenizer has what the layout needs (bos, eos, the family's pad)."""
    from minigpt4.models.llm_families import LLM_FAMILIES, family_mismatch, get_llm_family, transformers_class

    key = "model.llama_model"
    if not state.usable(key):
        return
    path = state.resolve(key)
    if not os.path.isfile(os.path.join(path, "config.json")):
        state.report.add(FAIL, key, f"{path} has no config.json", "give a Hugging Face save_pretrained folder")
        return
    name = str(state.model.get("llm_family") or "llama")
    if name not in LLM_FAMILIES:
        state.report.add(
            FAIL, "model.llm_family", f"unknown LLM family {name!r}", f"use one of {', '.join(sorted(LLM_FAMILIES))}"
        )
        return
    family = get_llm_family(name)
    problem = family_mismatch(family, path)
    if problem is not None:
        state.report.add(
            FAIL, key, problem, "set model.llm_family to the family of that folder (and the matching model.model_type)"
        )
        return
    state.llm_config = config = transformers_class(family.config_class).from_pretrained(path)
    shapes = hf_weight_shapes(path)
    rows = (shapes.get("model.embed_tokens.weight") or (None,))[0]
    if rows is None:
        state.report.add(
            FAIL,
            key,
            f"{path}: no weights with model.embed_tokens.weight (*.safetensors or pytorch_model*.bin)",
            "convert the LLM's weights to the Hugging Face format (save_pretrained)",
        )
    elif rows != config.vocab_size:
        state.report.add(
            FAIL,
            key,
            f"{path}: the embedding has {rows} rows but config.json says vocab_size {config.vocab_size}",
            "the weights and config.json come from different models: take both from one folder",
        )
    tokenizer = load_tokenizer(state, family, path)
    if tokenizer is None:
        return
    rows = rows or config.vocab_size
    problems = token_problems(state, family, tokenizer, rows, path)
    if not problems and rows is not None:
        state.report.add(
            OK,
            key,
            f"{family.name} {size_name(config.hidden_size)} ({config.num_hidden_layers} layers), {rows} embedding "
            f"rows, tokenizer of {len(tokenizer)} with bos/eos and pad {tokenizer.pad_token!r} ({path})",
        )


def load_tokenizer(state: _State, family: Any, path: str) -> Any:
    """The tokenizer as the model loads it (the family's loader, pad and bos set), or None with a FAIL line."""
    from minigpt4.models import llm_families

    key = "model.llama_model"
    try:
        tokenizer = llm_families.load_tokenizer(family, path)
    except Exception as err:  # any reason a tokenizer cannot load is this one problem
        need = (
            "the sentencepiece tokenizer.model of the LLM (and tokenizer_config.json)"
            if family.name == "llama"
            else "the LLM's own tokenizer files (tokenizer.json / vocab and merges, tokenizer_config.json)"
        )
        state.report.add(
            FAIL,
            key,
            f"{path}: the {family.name} tokenizer does not load: {type(err).__name__}: {str(err)[:200]}",
            f"the folder needs {need}",
        )
        return None
    state.tokenizer = tokenizer
    return tokenizer


def token_problems(state: _State, family: Any, tokenizer: Any, rows: int, path: str) -> bool:
    """FAIL/WARN lines about the tokenizer against the embedding and the template; True if any was added."""
    key, report, added = "model.llama_model", state.report, False
    size = len(tokenizer)
    if size > rows:
        added = bool(
            report.add(
                FAIL,
                key,
                f"{path}: the tokenizer has {size} tokens but the embedding only {rows} rows "
                f"(ids {rows}..{size - 1} would index past it)",
                "use the tokenizer that came with these weights (Vicuna v0: 32001 tokens and 32001 rows after "
                "python -m minigpt4.cli.apply_delta; LLaMA: 32000 and 32000)",
            )
        )
    elif size < rows:
        report.add(
            WARN,
            key,
            f"{path}: the embedding has {rows - size} more rows than the tokenizer has tokens "
            f"({rows} vs {size}); the extra rows are never used",
            "fine for Vicuna v0 with the LLaMA tokenizer (32001 vs 32000); otherwise check the tokenizer",
        )
    for name in ("bos", "eos"):
        token_id = getattr(tokenizer, f"{name}_token_id")
        if token_id is None or token_id >= rows:
            added = bool(
                report.add(
                    FAIL,
                    key,
                    f"{path}: the tokenizer has no usable {name} id ({token_id})",
                    "the prompt starts with bos and answers end with eos: use the LLM's own tokenizer.model",
                )
            )
    if family.pad_token != PAD_TOKEN:  # the family pads with the tokenizer's own pad token (checked on load)
        return added
    pad_id = tokenizer.convert_tokens_to_ids(PAD_TOKEN)
    if pad_id is None or pad_id == tokenizer.unk_token_id:
        vicuna = family_of_model(state.model) == "vicuna0"
        added = (
            bool(
                report.add(
                    FAIL if vicuna else WARN,
                    key,
                    f"{path}: the tokenizer has no {PAD_TOKEN!r} piece, which the model pads with (it would pad with unk)",
                    f"use the LLaMA/Vicuna tokenizer.model (it has {PAD_TOKEN!r} as one piece)",
                )
            )
            or added
        )
    return added


def check_ckpt(state: _State) -> None:
    """``llama_proj`` of ``model.ckpt`` fits the LLM width and the variant; keys that would not load are listed."""
    key = "model.ckpt"
    if not state.usable(key):
        return
    path = state.resolve(key)
    ckpt = load_mapped(path)
    found = state_of(ckpt)
    if found is None:
        state.report.add(FAIL, key, f"{path} holds no state dict", "give a MiniGPT-4 checkpoint ({'model': {...}})")
        return
    trained_for = checkpoint_llm(ckpt)
    problems = proj_problems(state, found, path, trained_for)
    for message, fix in problems:
        state.report.add(FAIL, key, message, fix)
    unknown = [k for k in found if not known_key(state, k)]
    if unknown:
        state.report.add(
            WARN,
            key,
            f"{path}: {len(unknown)} tensors would not load (no such module): {listed(unknown)}",
            "the checkpoint is for another model variant or version: check model.model_type",
        )
    if not problems:
        state.report.add(OK, key, f"{len(found)} tensors, llama_proj fits the LLM{trained_for} ({path})")


def checkpoint_llm(ckpt: Any) -> str:
    """`` (trained with model.llama_model X, model_type Y)`` from a runner checkpoint's config, else ``""``."""
    model = ckpt.get("config", {}).get("model", {}) if isinstance(ckpt, dict) else {}
    if not isinstance(model, dict) or not model.get("llama_model"):
        return ""
    return f" (trained with model.llama_model {model['llama_model']}, model_type {model.get('model_type')})"


def proj_problems(state: _State, found: dict[str, Any], path: str, trained_for: str) -> list[tuple[str, str]]:
    weight = shape_of(found.get("llama_proj.weight"))
    if weight is None:
        return []
    problems = []
    in_width = proj_in_width(state.model)
    if state.llm_config is not None and len(weight) == 2 and weight[0] != state.llm_config.hidden_size:
        hidden = state.llm_config.hidden_size
        problems.append(
            (
                f"{path}: llama_proj maps to {weight[0]} (a {size_name(weight[0])} LLM){trained_for}, but "
                f"model.llama_model is {size_name(hidden)} with hidden size {hidden}",
                f"use the checkpoint trained for the {size_name(hidden)} LLM, or point model.llama_model at the "
                f"{size_name(weight[0])} one",
            )
        )
    if len(weight) == 2 and weight[1] != in_width:
        variant = (
            "with a Q-Former (input = qformer_hidden_size)"
            if state.model.has_qformer
            else ("without a Q-Former (input = 4 x vit_width)")
        )
        problems.append(
            (
                f"{path}: llama_proj takes {weight[1]} inputs{trained_for}, but this model ({variant}) gives {in_width}",
                "the checkpoint is for the other variant (pretrain_vicuna0: 768 inputs, pretrain_llama2: 5632): "
                "use the matching checkpoint or model.model_type",
            )
        )
    return problems


def known_key(state: _State, key: str) -> bool:
    """Whether a checkpoint key names a tensor of this model (LLM keys by prefix, and LoRA keys when LoRA is on)."""
    if key.startswith(("llama_proj.", "visual_encoder.", "ln_vision.", "llama_model.")) or key == "query_tokens":
        return True
    return state.model.has_qformer and key.startswith("Qformer.")


# ----------------------------------------------------------------------------------------------------------
# model type / template / LLM family
# ----------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Family:
    """What one LLM family expects: the model types built for it, the prompt-template marker, end symbols, and
    whether its variant has a Q-Former."""

    name: str
    model_types: tuple[str, ...]
    template_marker: str
    end_syms: tuple[str, ...]
    has_qformer: bool


FAMILIES = (
    Family("vicuna0", ("pretrain_vicuna0", "tiny"), "###", ("\n", "###"), True),
    Family("llama2", ("pretrain_llama2", "tiny_llama2"), "[INST]", ("</s>",), False),
    Family("qwen2", ("pretrain_qwen2", "tiny_qwen2"), "<|im_start|>", ("\n", "<|im_end|>"), True),
)
"""Named as the chat templates (``model.conv_template``): the template a checkpoint was trained with."""


def family_named(name: str | None) -> Family | None:
    return next((f for f in FAMILIES if f.name == name), None)


def family_of_model(model_cfg: Any) -> str | None:
    """The family (chat template) a model section is for: ``model.conv_template``, else by model type."""
    explicit = model_cfg.get("conv_template") if hasattr(model_cfg, "get") else None
    if explicit:
        return str(explicit)
    model_type = str(model_cfg.get("model_type") or "")
    return next((f.name for f in FAMILIES if model_type in f.model_types), None)


def family_of_template(template: str) -> str | None:
    return next((f.name for f in FAMILIES if template and f.template_marker in template), None)


def check_family(state: _State) -> None:
    """Model type, prompt template, end symbol and variant agree on one LLM family."""
    model = state.model
    name = family_of_model(model)
    family = family_named(name)
    if family is None:
        state.report.add(WARN, "family", f"model type {model.model_type!r} is of no known LLM family; not checked")
        return
    problems = 0
    template = str(model.get("prompt_template") or "")
    other = family_of_template(template)
    if other is not None and other != family.name:
        problems += 1
        right = next(f.template_marker for f in FAMILIES if f.name == family.name)
        state.report.add(
            FAIL,
            "model.prompt_template",
            f"{template!r} is the {other} template but model_type "
            f"{model.model_type!r} is a {family.name} model (set in {state.cfg.origin_of('model.prompt_template')})",
            f"use the {family.name} template (with {right!r}) or the {other} model type",
        )
    if model.end_sym not in family.end_syms:
        problems += 1
        state.report.add(
            WARN,
            "model.end_sym",
            f"{model.end_sym!r} is not an end symbol of {family.name} ({family.end_syms})",
            f"set model.end_sym to one of {family.end_syms}",
        )
    if model.has_qformer != family.has_qformer:
        problems += 1
        state.report.add(
            WARN,
            "model.has_qformer",
            f"{model.has_qformer} differs from the published {family.name} variant",
            "fine for an experiment; released checkpoints of this family will not fit",
        )
    if not problems:
        state.report.add(OK, "family", f"{family.name}: model type, prompt template and end symbol agree")


def llm_family_hint(path: str) -> str | None:
    """The family a Hugging Face folder's name suggests (``Llama-2-7b-chat-hf``, ``vicuna-13b-v0``, ``Qwen2-7B``)."""
    name = os.path.basename(os.path.normpath(path)).lower()
    if re.search(r"llama-?2", name):
        return "llama2"
    if "qwen" in name:
        return "qwen2"
    return "vicuna0" if "vicuna" in name else None


def check_llm_family(state: _State) -> None:
    if not state.usable("model.llama_model"):
        return
    hint, family = llm_family_hint(state.resolve("model.llama_model")), family_of_model(state.model)
    if hint and family and hint != family:
        state.report.add(
            WARN,
            "family",
            f"model.llama_model looks like a {hint} folder but model_type "
            f"{state.model.model_type!r} is a {family} model",
            "garbled answers follow a mismatch: use the model type (and checkpoint) of that LLM",
        )


# ----------------------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------------------


def check_datasets(state: _State) -> None:
    """Each dataset builds and one sample of each split decodes, through the builders the training uses."""
    from minigpt4.common.registry import registry

    for name, section in state.cfg.datasets_cfg.items():
        key = f"datasets.{name}"
        storages = [str(v) for k, v in section.build_info.items() if "storage" in k and isinstance(v, str)]
        if any(s.startswith(URL_PREFIXES) for s in storages):
            state.report.add(WARN, key, f"remote shards ({listed(storages)}) are not checked locally")
            continue
        if any(k.startswith(key + ".") for k in state.bad_paths):
            continue
        try:
            datasets = registry.get_builder_class(name)(section, name=name).build_datasets()
            samples = {split: first_sample(ds) for split, ds in datasets.items()}
        except Exception as err:  # a dataset that cannot give one sample: say why, with its own message
            state.report.add(FAIL, key, f"{type(err).__name__}: {err}", f"fix the data of {key}.build_info")
            continue
        described = ", ".join(f"{split}: {describe(s)}" for split, s in samples.items())
        state.report.add(OK, key, f"one sample decodes ({described})")


def first_sample(dataset: Any) -> dict[str, Any]:
    """Sample 0 of a map-style dataset, the first decodable sample of a stream."""
    if isinstance(dataset, torch.utils.data.IterableDataset):
        for sample in dataset:
            return sample
        raise ValueError("the stream gave no sample")
    if len(dataset) == 0:
        raise ValueError("the dataset is empty")
    return dataset[0]


def describe(sample: dict[str, Any]) -> str:
    image = sample.get("image")
    shape = list(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
    return f"image {shape}, answer {str(sample.get('answer'))[:40]!r}"


# ----------------------------------------------------------------------------------------------------------
# 8-bit
# ----------------------------------------------------------------------------------------------------------


def install_hint() -> str:
    """How to install bitsandbytes here: the project's ``8bit`` extra when pyproject.toml declares one."""
    from minigpt4.common.utils import get_repo_root

    try:
        with open(os.path.join(get_repo_root(), "pyproject.toml"), encoding="utf-8") as f:
            text = f.read()
    except OSError:
        text = ""
    if re.search(r'^\s*"?8bit"?\s*=', text, flags=re.MULTILINE):
        return 'pip install -e ".[8bit]"'
    return "pip install bitsandbytes"


def check_low_resource(state: _State) -> None:
    key = "model.low_resource"
    if not state.model.low_resource:
        return
    missing = []
    if not torch.cuda.is_available():
        missing.append("a CUDA GPU (bitsandbytes 8-bit runs on CUDA; none is visible here)")
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append(f"the bitsandbytes package ({install_hint()})")
    if missing:
        state.report.add(
            FAIL,
            key,
            f"8-bit loading needs {' and '.join(missing)}",
            f"{install_hint()} on a GPU machine, or set model.low_resource: false",
        )
    else:
        state.report.add(OK, key, f"8-bit LLM: CUDA and bitsandbytes present (device {state.model.device_8bit})")


# ----------------------------------------------------------------------------------------------------------
# memory
# ----------------------------------------------------------------------------------------------------------

# Saved activations of one frozen LLaMA decoder layer per token, in elements of the compute dtype: the layer's
# inputs to its norms, attention (q, k, v, output) and MLP (gate, up, their product) that backward needs to carry
# the gradient through to the image tokens. Measured on CPU with bench/preflight_memory.py (BENCHMARKS.md).
ACT_PER_HIDDEN = 10
ACT_PER_INTERMEDIATE = 4
OPTIMIZER_BYTES = 12  # per trainable parameter: its fp32 gradient and AdamW's two fp32 moments
LOGIT_BYTES = 12  # per logit of a labelled position: fp32 logits, their gradient and the softmax
PROMPT_TOKENS = 40  # instruction tokens assumed when no tokenizer or prompt file tells
STEP_OVERHEAD = 6 * 2**20  # fixed cost of a training step (autograd engine, allocator arenas), measured on CPU
CHAT_CONTEXT = 2000  # tokens of chat context (Chat's default max_length) for the KV cache


def shard_factor(cfg: Any) -> int:
    """How many ways the frozen weights are split across GPUs: 1 (DDP keeps a full copy per GPU). The hook for
    FSDP sharding: return the shard count here when the runner shards the frozen towers."""
    return 1


def tensor_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


def llm_bytes(llm: torch.nn.Module, dtype: torch.dtype, eight_bit: bool) -> int:
    """The LLM's weights in ``dtype``; in 8 bits the decoder's linear weights take one byte (bitsandbytes keeps
    the embeddings, norms and LM head in half precision)."""
    size = torch.empty((), dtype=dtype).element_size()
    total = 0
    for name, module in llm.named_modules():
        for param in module.parameters(recurse=False):
            linear = isinstance(module, torch.nn.Linear) and "lm_head" not in name
            total += param.numel() * (1 if eight_bit and linear else size)
    return total


@dataclasses.dataclass
class MemoryEstimate:
    """Bytes per device of one training step (or one chat), by part, and the formula's inputs."""

    weights: int
    optimizer: int
    activations: int
    batch: int
    seq_len: int
    parts: dict[str, int]

    @property
    def total(self) -> int:
        return self.weights + self.optimizer + self.activations


def estimate_memory(
    model_cfg: Any, llm_config: Any, batch: int, prompt_tokens: int = PROMPT_TOKENS, train: bool = True, shards: int = 1
) -> MemoryEstimate:
    """Memory of a training step (``train``) or a chat, per device.

    weights = sum over the meta-device modules of elements x dtype bytes (8-bit LLM linears: 1 byte), divided
    by ``shards`` for the frozen towers; optimizer = trainable parameters x 12 bytes; activations (train) =
    B x L x layers x (10 H + 4 I + heads x L) x compute-dtype bytes (the attention probabilities when the
    attention is not fused) + B x T x V x 12 for the LM head over the T labelled positions (all L when
    ``sparse_lm_head`` is off) + the ViT's forward peak (:func:`vision_forward_bytes`) + 6 MiB, with
    L = 1 + prompt + image tokens + max_txt_len;
    a chat holds the KV cache instead: 2 x layers x H x 2000 tokens x dtype bytes.
    """
    from minigpt4.models.mini_gpt4 import TORCH_DTYPES

    dtype = TORCH_DTYPES.get(model_cfg.torch_dtype, torch.float16)
    act = torch.empty((), dtype=dtype).element_size()
    vit, ln_vision = meta_vit(model_cfg)
    parts = {"vit": tensor_bytes(vit) + tensor_bytes(ln_vision)}
    n_image = (model_cfg.image_size // model_cfg.vit_patch_size) ** 2 // LLAMA2_PATCH_GROUP
    if model_cfg.has_qformer:
        qformer, query_tokens = meta_qformer(model_cfg)
        parts["qformer"] = tensor_bytes(qformer) + query_tokens.numel() * 4
        n_image = model_cfg.num_query_token
    parts["llm"] = llm_bytes(meta_llm(llm_config), dtype, bool(model_cfg.low_resource))
    trainable = (proj_in_width(model_cfg) + 1) * llm_config.hidden_size
    trainable += lora_parameters(model_cfg, llm_config)
    weights = sum(parts.values()) // max(1, shards) + trainable * 4
    parts["trainable"] = trainable * 4
    H, inter, layers = llm_config.hidden_size, llm_config.intermediate_size, llm_config.num_hidden_layers
    seq_len = 1 + prompt_tokens + n_image + model_cfg.max_txt_len
    if train:
        labelled = model_cfg.max_txt_len if model_cfg.sparse_lm_head else seq_len
        parts["llm_activations"] = batch * seq_len * layers * (ACT_PER_HIDDEN * H + ACT_PER_INTERMEDIATE * inter) * act
        parts["llm_attention"] = batch * llm_config.num_attention_heads * seq_len**2 * layers * act
        parts["lm_head"] = batch * labelled * llm_config.vocab_size * LOGIT_BYTES
        parts["vision_forward"] = vision_forward_bytes(model_cfg, batch)
        parts["step_overhead"] = STEP_OVERHEAD
        activations = sum(parts[k] for k in ("llm_activations", "llm_attention", "lm_head", "vision_forward"))
        activations += STEP_OVERHEAD
        optimizer = trainable * OPTIMIZER_BYTES
    else:
        activations = parts["kv_cache"] = 2 * layers * H * CHAT_CONTEXT * act
        optimizer = 0
    return MemoryEstimate(weights, optimizer, activations, batch, seq_len, parts)


def vision_forward_bytes(model_cfg: Any, batch: int) -> int:
    """The peak of the frozen ViT's no-grad forward, one block at a time: B x T x (MLP + 4 W) x 4 bytes for the
    block's tensors plus B x heads x T^2 x 4 for its attention."""
    tokens = (model_cfg.image_size // model_cfg.vit_patch_size) ** 2 + 1
    block = tokens * (model_cfg.vit_mlp_dim + 4 * model_cfg.vit_width) + model_cfg.vit_heads * tokens**2
    return batch * block * 4


def lora_parameters(model_cfg: Any, llm_config: Any) -> int:
    """LoRA adapter parameters: r x (in + out) per targeted projection per layer (square projections assumed,
    MLP projections counted with the intermediate width)."""
    if model_cfg.lora_r <= 0:
        return 0
    H, inter = llm_config.hidden_size, llm_config.intermediate_size
    widths = {"gate_proj": H + inter, "up_proj": H + inter, "down_proj": H + inter}
    per_layer = sum(widths.get(name, 2 * H) for name in model_cfg.lora_target_modules)
    return model_cfg.lora_r * per_layer * llm_config.num_hidden_layers


def train_batch(cfg: Any) -> int:
    """The largest batch a step sees: a dataset's own ``batch_size``, else ``run.batch_size_train``."""
    sizes = [s.batch_size for s in cfg.datasets_cfg.values() if s.get("batch_size")]
    return max(sizes + [cfg.run_cfg.batch_size_train])


def prompt_length(state: _State) -> int:
    """Tokens of the longest wrapped instruction (the placeholder excluded), or :data:`PROMPT_TOKENS`."""
    from minigpt4.models.mini_gpt4 import load_prompts

    model = state.model
    if state.tokenizer is None:
        return PROMPT_TOKENS
    prompts = load_prompts(model.prompt_path, model.prompt_template) if model.prompt_path else []
    if not prompts and model.prompt_template:
        prompts = [model.prompt_template.format(IMAGE_PLACEHOLDER)]
    lengths = [
        len(state.tokenizer(p.replace(IMAGE_PLACEHOLDER, " "), add_special_tokens=False).input_ids) for p in prompts
    ]
    return max(lengths, default=0)


def free_memory(device: str) -> tuple[str, int, int] | None:
    """``(what, free bytes, total bytes)`` of the device the job will use, or None if it is not here."""
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            return None
        index = torch.device(device).index
        index = int(os.environ.get("LOCAL_RANK", 0)) if index is None else index
        free, total = torch.cuda.mem_get_info(index)
        return f"GPU {index} ({torch.cuda.get_device_name(index)})", free, total
    info = {}
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            name, _, value = line.partition(":")
            info[name] = int(value.split()[0]) * 1024
    if "MemAvailable" not in info:
        return None
    return "CPU memory", info["MemAvailable"], info["MemTotal"]


def check_memory(state: _State, train: bool, device: str | None) -> None:
    if state.llm_config is None:
        return
    cfg, model = state.cfg, state.model
    batch = train_batch(cfg) if train else 1
    estimate = estimate_memory(model, state.llm_config, batch, prompt_length(state), train, shard_factor(cfg))
    what = (
        f"{'stage 2' if model.prompt_path else 'stage 1'} at batch {batch}" if train else "chat"
    ) + f" with a {size_name(state.llm_config.hidden_size)} LLM ({model.torch_dtype}"
    what += ", 8-bit)" if model.low_resource else ")"
    need = (
        f"{what} needs ~{estimate.total / GIB:.2f} GB per device (weights {estimate.weights / GIB:.2f}, "
        f"optimizer {estimate.optimizer / GIB:.2f}, activations {estimate.activations / GIB:.2f} at sequence "
        f"length {estimate.seq_len})"
    )
    device = device or str(cfg.run_cfg.device)
    have = free_memory(device)
    if have is None:
        state.report.add(WARN, "memory", f"{need}; no {device} device here to compare with")
        return
    name, free, total = have
    status = OK if estimate.total <= free else WARN if estimate.total <= total else FAIL
    fix = "lower run.batch_size_train (or datasets.*.batch_size), model.max_txt_len, use model.low_resource or a larger device"
    state.report.add(status, "memory", f"{need}; you have {free / GIB:.2f} GB free of {total / GIB:.2f} on {name}", fix)


# ----------------------------------------------------------------------------------------------------------
# running them
# ----------------------------------------------------------------------------------------------------------

CHECKS = (check_vit, check_qformer, check_llm, check_ckpt, check_family, check_llm_family, check_low_resource)


def run_checks(cfg: Any, train: bool = True, data: bool = True, device: str | None = None) -> Report:
    """Every check on a validated :class:`~minigpt4.common.config.Config`; a check that crashes is one FAIL line.

    Args:
        cfg: the job's configuration.
        train: estimate the memory of a training step (else of a chat, and no data check).
        data: build each dataset and decode one sample.
        device: the device the memory is compared with (default ``run.device``).
    """
    state = _State(cfg, Report())
    check_paths(state)
    steps: list[Any] = list(CHECKS)
    if data and train:
        steps.append(check_datasets)
    steps.append(lambda s: check_memory(s, train, device))
    for step in steps:
        try:
            step(state)
        except Exception as err:  # one broken file must not hide the other findings
            name = getattr(step, "__name__", "check").removeprefix("check_")
            state.report.add(FAIL, name, f"{type(err).__name__}: {err}", "see the message; --debug shows where")
            logger.debug("pre-flight check %s failed", name, exc_info=True)
    return state.report


def skip_requested() -> bool:
    return os.environ.get(SKIP_ENV, "").strip().lower() not in ("", "0", "false", "no")


def check_or_raise(cfg: Any, train: bool = True, device: str | None = None) -> Report | None:
    """What entry points call before building anything: run the checks but the data one (the entry point builds
    the datasets next, with the same messages), log the table (rank 0) and raise
    :class:`~minigpt4.common.config.ConfigError` listing the FAIL lines if there are any. ``MINIGPT4_SKIP_CHECK=1``
    skips it (returns None)."""
    from minigpt4.common.config import ConfigError

    if skip_requested():
        logger.warning("%s is set: the pre-flight check is skipped", SKIP_ENV)
        return None
    # no data check here: the entry point builds the datasets next, failing with the dataset's own message
    report = run_checks(cfg, train=train, data=False, device=device)
    if os.environ.get("RANK", "0") == "0":
        logger.info("pre-flight check of %s:\n%s", cfg.cfg_path, report.table())
        for finding in report.findings:
            if finding.status == WARN:
                logger.warning("pre-flight: %s", finding.line())
    if report.failures:
        lines = "\n".join(f.line() for f in report.failures)
        raise ConfigError(
            f"the pre-flight check of {cfg.cfg_path} failed:\n{lines}\n"
            f"(python -m minigpt4.cli.check --cfg-path {cfg.cfg_path} prints the whole table; {SKIP_ENV}=1 skips it)"
        )
    return report


def check_command_line(argv: Sequence[str] | None, train: bool = False) -> Report | None:
    """:func:`check_or_raise` for an entry point that builds its config later (``demo.py``): reads ``--cfg-path``
    and ``--options`` from ``argv`` (anything else is left to the entry point, as is a missing ``--cfg-path``)."""
    import argparse

    from minigpt4.common.config import Config

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--cfg-path")
    parser.add_argument("--options", nargs="+", default=None)
    parser.add_argument("--device", default=None)
    args, _ = parser.parse_known_args(argv)
    if not args.cfg_path or "-h" in argv or "--help" in argv:
        return None
    cfg = Config(args)
    device = args.device if args.device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    return check_or_raise(cfg, train=train, device=device)
