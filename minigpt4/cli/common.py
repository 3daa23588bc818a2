"""What every chat entry point shares: model arguments, the device, and building a :class:`Chat` from a config."""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from typing import Any

import torch

from minigpt4.common.config import Config, add_debug_argument
from minigpt4.common.registry import registry
from minigpt4.conversation.conversation import Chat, Conversation, template_for

logger = logging.getLogger(__name__)


def add_model_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--cfg-path``, ``--options``, ``--gpu-id``, ``--device``, the cache switches and ``--debug``."""
    parser.add_argument("--cfg-path", required=True, help="eval config, e.g. eval_configs/minigpt4_eval.yaml")
    parser.add_argument(
        "--options",
        nargs="+",
        default=None,
        help="override config values: key=value pairs with dotted keys, e.g. model.ckpt=path/to/ckpt.pth",
    )
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
    add_debug_argument(parser)
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


def generation_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``Chat.answer`` keyword arguments set by :func:`add_generation_args`."""
    return dict(
        max_new_tokens=args.max_new_tokens,
        num_beams=args.num_beams,
        temperature=args.temperature,
        top_p=args.top_p,
        repetition_penalty=args.repetition_penalty,
        max_length=args.max_length,
        do_sample=args.sample,
    )


def add_generation_args(parser: argparse.ArgumentParser, sample: bool) -> argparse.ArgumentParser:
    """Decoding options; ``sample`` is the default of ``--sample`` / ``--greedy``."""
    group = parser.add_argument_group("generation")
    group.add_argument("--max-new-tokens", type=int, default=300)
    group.add_argument("--num-beams", type=int, default=1)
    group.add_argument("--temperature", type=float, default=1.0)
    group.add_argument("--top-p", type=float, default=0.9)
    group.add_argument("--repetition-penalty", type=float, default=1.05)
    group.add_argument("--max-length", type=int, default=2000, help="context + new tokens; older context is dropped")
    decoding = group.add_mutually_exclusive_group()
    decoding.add_argument("--sample", dest="sample", action="store_true", help="sample (temperature, top-p)")
    decoding.add_argument("--greedy", dest="sample", action="store_false", help="greedy / beam search")
    parser.set_defaults(sample=sample)
    return parser
