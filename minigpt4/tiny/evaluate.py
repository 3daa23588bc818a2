"""Does the trained tiny MiniGPT-4 describe what it sees? Measured on the tiny world's held-out images.

``python -m minigpt4.tiny.evaluate --cfg-path eval_configs/minigpt4_tiny_eval.yaml [--prompt chat|stage2|stage1]
[--heldout tiny_world/heldout] [--limit N] [--json report.json] [--options model.ckpt=...]``

For every held-out image the model writes a description (greedy); for each attribute (shape, colour, position,
size) the report gives how often the description names the right value and no other value of that
attribute, next to chance level (1 / number of values). It also gives the mean loss of the model on the held-out
reference texts (the detailed description under the stage-2 template, or the terse caption for ``stage1``) and the
style of the answers (words, sentences), which is what stage 2 changes.

``--image PATH [--question TEXT]`` answers about one image instead (a one-shot chat).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from typing import Any

import torch
from PIL import Image

from minigpt4.common.config import Config, add_debug_argument, run_entry_point
from minigpt4.common.registry import registry
from minigpt4.tiny import world
from minigpt4.tiny.generate import DEFAULT_QUESTION, PROMPT_STYLES, greedy_generate, prompt_embeds, prompt_text

logger = logging.getLogger(__name__)

DEFAULT_HELDOUT = os.path.join("tiny_world", "heldout")
_SENTENCE_END = re.compile(r"[.!?](\s|$)")


def load_model(cfg: Config) -> tuple[Any, Any]:
    """The model of ``cfg`` (with its ``ckpt``) in eval mode on CPU, and its eval image processor."""
    model_cfg = cfg.model_cfg
    model = registry.get_model_class(model_cfg.arch).from_config(model_cfg)
    model.eval()
    proc_cfg = cfg.preprocess_cfg.vis_processor.eval
    vis_processor = registry.get_processor_class(proc_cfg.name).from_config(proc_cfg)
    return model, vis_processor


def style_of(texts: list[str]) -> dict[str, float]:
    """Mean words and sentences per answer, and the share of answers with two or more sentences."""
    words = [len(t.split()) for t in texts]
    sentences = [len(_SENTENCE_END.findall(t)) for t in texts]
    n = max(1, len(texts))
    return {
        "mean_words": sum(words) / n,
        "mean_sentences": sum(sentences) / n,
        "multi_sentence_share": sum(s >= 2 for s in sentences) / n,
    }


@torch.no_grad()
def heldout_loss(model: Any, images: torch.Tensor, items: list[dict[str, Any]], style: str) -> float:
    """Mean loss on the reference texts: detailed ones under the stage-2 template, terse ones for ``stage1``."""
    if style == "stage1":
        answers = [item["captions"]["cc_sbu"] for item in items]
    else:
        answers = [item["captions"]["detailed"] for item in items]
    instruction = prompt_text(style)
    out = model({"image": images, "answer": answers, "instruction_input": [instruction] * len(items)})
    return out["loss"].item()


def evaluate(
    model: Any, vis_processor: Any, heldout: str, style: str, limit: int | None, batch_size: int, question: str
) -> dict[str, Any]:
    """Caption the held-out images; return the report (accuracies, chance, loss, style, examples)."""
    with open(os.path.join(heldout, "labels.json"), encoding="utf-8") as f:
        items = json.load(f)["items"][:limit]
    prompt = prompt_text(style, question)
    correct = {name: 0 for name in world.ATTRIBUTES}
    answers, losses, start = [], [], time.time()
    for i in range(0, len(items), batch_size):
        batch = items[i : i + batch_size]
        images = torch.stack(
            [vis_processor(Image.open(os.path.join(heldout, it["image"])).convert("RGB")) for it in batch]
        )
        images = images.to(model.device)
        texts = greedy_generate(model, prompt_embeds(model, images, prompt))
        losses.append(heldout_loss(model, images, batch, style) * len(batch))
        for text, item in zip(texts, batch):
            for name, ok in world.judge(text, item["labels"]).items():
                correct[name] += ok
        answers.extend(texts)
    n = len(items)
    chance = world.chance_levels()
    described = [{"id": it["id"], "labels": it["labels"], "answer": a} for it, a in zip(items, answers)]
    report = {
        "prompt_style": style,
        "question": question if style != "stage1" else None,
        "images": n,
        "accuracy": {name: correct[name] / n for name in correct},
        "chance": chance,
        "heldout_loss": sum(losses) / n,
        "style": style_of(answers),
        "examples": described[:5],
        "answers": described,
        "seconds": time.time() - start,
    }
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [f"held-out images: {report['images']}  prompt: {report['prompt_style']}"]
    lines.append(f"{'attribute':<12}{'accuracy':>10}{'chance':>10}")
    for name, acc in report["accuracy"].items():
        lines.append(f"{name:<12}{acc:>10.3f}{report['chance'][name]:>10.3f}")
    lines.append(f"held-out loss: {report['heldout_loss']:.4f}")
    style = report["style"]
    lines.append(
        f"answers: {style['mean_words']:.1f} words, {style['mean_sentences']:.2f} sentences on average, "
        f"{style['multi_sentence_share']:.0%} with two or more sentences"
    )
    for example in report["examples"][:3]:
        lines.append(f"  e.g. {example['labels']} -> {example['answer']!r}")
    return "\n".join(lines)


def answer_one(model: Any, vis_processor: Any, image_path: str, style: str, question: str) -> str:
    image = vis_processor(Image.open(image_path).convert("RGB")).unsqueeze(0).to(model.device)
    return greedy_generate(model, prompt_embeds(model, image, prompt_text(style, question)))[0]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Evaluate a tiny MiniGPT-4 on the tiny world's held-out images.")
    parser.add_argument("--cfg-path", required=True, help="eval config, e.g. eval_configs/minigpt4_tiny_eval.yaml")
    parser.add_argument("--heldout", default=DEFAULT_HELDOUT, help=f"held-out folder (default: {DEFAULT_HELDOUT})")
    parser.add_argument("--prompt", choices=PROMPT_STYLES, default="chat", help="how the model is asked")
    parser.add_argument("--question", default=DEFAULT_QUESTION, help="the question (stage2 and chat prompts)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--json", default=None, help="also write the report to this JSON file")
    parser.add_argument("--image", default=None, help="answer about this one image instead")
    parser.add_argument("--options", nargs="+", default=None, help="override config keys: a.b=c ...")
    add_debug_argument(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any] | str:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = Config(args)
    model, vis_processor = load_model(cfg)
    if args.image:
        answer = answer_one(model, vis_processor, args.image, args.prompt, args.question)
        sys.stdout.write(f"Q: {args.question}\nA: {answer}\n")
        return answer
    report = evaluate(model, vis_processor, args.heldout, args.prompt, args.limit, args.batch_size, args.question)
    sys.stdout.write(format_report(report) + "\n")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    sys.exit(run_entry_point(main, prog="python -m minigpt4.tiny.evaluate"))
