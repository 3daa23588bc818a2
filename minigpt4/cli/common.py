"""What every chat entry point shares: model arguments, the device, and building a :class:`Chat` from a config."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import typing
from dataclasses import dataclass

import torch

from minigpt4.common.config import Config, add_config_args
from minigpt4.common.registry import registry
from minigpt4.conversation.conversation import Chat, Conversation, template_for
from minigpt4.conversation.generation import GenerationConfig

logger = logging.getLogger(__name__)


def add_model_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--cfg-path``, ``--options``, ``--gpu-id``, ``--device``, the cache switches and ``--debug``."""
    add_config_args(parser, "eval config, e.g. eval_configs/minigpt4_eval.yaml", "model.ckpt=path/to/ckpt.pth")
    parser.add_argument(
        "--gpu-id", type=int, default=0, help="CUDA device index, -1 for the CPU (when --device is not given)"
    )
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:1 (default: cuda:GPU_ID or cpu)")
    parser.add_argument(
        "--no-kv-cache", action="store_true", help="recompute the whole context at every turn (saves memory)"
    )
    parser.add_argument(
        "--retokenize-answers",
        action="store_true",
        help="feed earlier answers back as re-tokenized text (published) instead of the generated token ids",
    )
    return parser


def resolve_device(args: argparse.Namespace) -> torch.device:
    if args.device:
        return torch.device(args.device)
    if args.gpu_id < 0 or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device(f"cuda:{args.gpu_id}")


@dataclass
class LoadedChat:
    """A ready :class:`Chat`, the chat template matching the model, and the config it came from."""

    chat: Chat
    template: Conversation
    cfg: Config


def load_chat(args: argparse.Namespace) -> LoadedChat:
    """Build the model (with ``model.ckpt`` loaded), the eval image processor and a :class:`Chat`."""
    cfg = Config(args)
    device = resolve_device(args)
    model_cfg = cfg.model_cfg
    if not model_cfg.ckpt:
        raise SystemExit(
            f"{args.cfg_path}: model.ckpt is not set: give the trained MiniGPT-4 checkpoint in the config or with "
            "--options model.ckpt=PATH (without it the image projection is untrained)"
        )
    cfg.check_paths()  # every weight file exists, before the large ones are loaded
    model = registry.get_model_class(model_cfg.arch).from_config(model_cfg)
    if not model_cfg.low_resource:  # an 8-bit LLM is already placed by its device map
        model = model.to(device)
    model.eval()
    vis_cfg = cfg.preprocess_cfg.vis_processor.eval
    vis_processor = registry.get_processor_class(vis_cfg.name).from_config(vis_cfg)
    chat = Chat(
        model,
        vis_processor,
        device=device,
        reuse_cache=not args.no_kv_cache,
        keep_answer_ids=not args.retokenize_answers,
    )
    logger.info("model %s (%s) ready on %s", model_cfg.arch, model_cfg.model_type, device)
    return LoadedChat(chat, template_for(model_cfg), cfg)


def generation_options(args: argparse.Namespace) -> GenerationConfig:
    """The :class:`GenerationConfig` set by the flags of :func:`add_generation_args`."""
    return GenerationConfig(**{name: getattr(args, name) for name in GenerationConfig.names()})


def add_generation_args(
    parser: argparse.ArgumentParser, defaults: GenerationConfig | None = None
) -> argparse.ArgumentParser:
    """One flag per :class:`GenerationConfig` field (``--max-new-tokens``, ..., ``--sample`` / ``--greedy``), with
    ``defaults`` (default: the published demo's) as their defaults."""
    defaults = defaults or GenerationConfig()
    group = parser.add_argument_group("generation")
    types = typing.get_type_hints(GenerationConfig)
    for field in dataclasses.fields(GenerationConfig):
        default = getattr(defaults, field.name)
        if field.name == "do_sample":
            decoding = group.add_mutually_exclusive_group()
            decoding.add_argument("--sample", dest="do_sample", action="store_true", help="sample (temperature, top-p)")
            decoding.add_argument("--greedy", dest="do_sample", action="store_false", help="greedy / beam search")
            parser.set_defaults(do_sample=default)
            continue
        flag = "--" + field.name.replace("_", "-")
        help_text = f"{field.metadata.get('help', '')} (default: %(default)s)"
        group.add_argument(flag, dest=field.name, type=types[field.name], default=default, help=help_text)
    return parser


def check_generation_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """``args``, or a usage error of ``parser`` when the generation flags are out of range."""
    try:
        generation_options(args)
    except ValueError as err:
        parser.error(str(err))
    return args
