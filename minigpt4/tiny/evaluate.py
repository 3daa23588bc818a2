"""Does the trained tiny MiniGPT-4 describe what it sees? Measured on the tiny world's held-out images.

``python -m minigpt4.tiny.evaluate --cfg-path eval_configs/minigpt4_tiny_eval.yaml [--prompt chat|stage2|stage1]
[--heldout tiny_world/heldout] [--limit N] [--json report.json] [--options model.ckpt=...]``

For every held-out image the model writes a description through :class:`Chat` (its batched path, as the demo,
the terminal chat and the captioning tool generate; greedy, at most 60 new tokens unless the generation flags say
otherwise); for each attribute (shape, colour, position,
size) the report gives how often the description names the right value and no other value of that
attribute, next to chance level (1 / number of values). It also gives the mean loss of the model on the held-out
reference texts (the detailed description under the stage-2 template, or the terse caption for ``stage1``) and the
style of the answers (words, sentences), which is what stage 2 changes.

``--image PATH [--question TEXT]`` answers about one image instead (a one-shot chat).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import sys
import time
from typing import Any

import torch

from minigpt4.cli.common import add_generation_args, check_generation_args, generation_options
from minigpt4.common.config import Config, add_debug_argument, run_entry_point
from minigpt4.common.constants import IMAGE_PLACEHOLDER
from minigpt4.common.registry import registry
from minigpt4.conversation.conversation import IMAGE_MESSAGE, Chat, Conversation, SeparatorStyle, template_for
from minigpt4.conversation.generation import GREEDY, GenerationConfig
from minigpt4.tiny import world

logger = logging.getLogger(__name__)

DEFAULT_HELDOUT = os.path.join("tiny_world", "heldout")
DEFAULT_QUESTION = "Describe this image in detail."
PROMPT_STYLES = ("stage1", "stage2", "chat")
STAGE1_END_SYM = "\n"  # stage-1 captions end with the tiny model type's end_sym (configs/models/minigpt4_tiny.yaml)
EVAL_GENERATION = dataclasses.replace(GREEDY, max_new_tokens=60)
"""How the evaluation decodes: greedy, 60 new tokens at most (the descriptions are shorter)."""
_SENTENCE_END = re.compile(r"[.!?](\s|$)")


def load_model(cfg: Config) -> tuple[Any, Any]:
    """The model of ``cfg`` (with its ``ckpt``) in eval mode on CPU, and its eval image processor."""
    model_cfg = cfg.model_cfg
    model = registry.get_model_class(model_cfg.arch).from_config(model_cfg)
    model.eval()
    proc_cfg = cfg.preprocess_cfg.vis_processor.eval
    vis_processor = registry.get_processor_class(proc_cfg.name).from_config(proc_cfg)
    return model, vis_processor


def conversation_for(chat: Chat, style: str, question: str, model_cfg: Any) -> Conversation:
    """A conversation holding one image and (but for ``stage1``) the question, as :meth:`Chat.answer` takes it.

    ``stage1``: ``[bos][image]``, the answer ends at ``\\n`` (the stage-1 training sequence); ``stage2``: the
    model's ``prompt_template`` around ``<Img><ImageHere></Img> question``, ending at its ``end_sym`` (the stage-2
    training sequence); ``chat``: the model's chat template with the image message and the question, exactly as
    the demo builds it.
    """
    if style == "stage1":
        return Conversation(
            "", ("", ""), [["", IMAGE_PLACEHOLDER]], sep_style=SeparatorStyle.TWO, sep="", sep2=STAGE1_END_SYM
        )
    if style == "stage2":
        template = str(model_cfg.prompt_template or "")
        if template.count("{}") != 1:
            raise ValueError(f"--prompt stage2 needs model.prompt_template with one '{{}}', got {template!r}")
        head, tail = template.split("{}")
        conv = Conversation("", (head, tail), [], sep_style=SeparatorStyle.TWO, sep="", sep2=model_cfg.end_sym)
    elif style == "chat":
        conv = template_for(model_cfg).copy()
    else:
        raise ValueError(f"unknown prompt style {style!r}; known: {', '.join(PROMPT_STYLES)}")
    conv.append_message(conv.roles[0], IMAGE_MESSAGE)
    chat.ask(question, conv)
    return conv


def prompt_of(conv: Conversation) -> str:
    """The prompt the model reads before its answer (the instruction of the held-out loss)."""
    conv = conv.copy()
    conv.append_message(conv.roles[1], None)
    return conv.get_prompt()


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
def heldout_loss(model: Any, images: torch.Tensor, items: list[dict[str, Any]], style: str, prompt: str) -> float:
    """Mean loss on the reference texts after ``prompt``: detailed ones, or terse ones for ``stage1``."""
    if style == "stage1":
        answers = [item["captions"]["cc_sbu"] for item in items]
    else:
        answers = [item["captions"]["detailed"] for item in items]
    out = model({"image": images, "answer": answers, "instruction_input": [prompt] * len(items)})
    return out["loss"].item()


def evaluate(
    chat: Chat,
    model_cfg: Any,
    heldout: str,
    style: str,
    limit: int | None,
    batch_size: int,
    question: str,
    generation: GenerationConfig = EVAL_GENERATION,
) -> dict[str, Any]:
    """Describe the held-out images through ``chat.answer_batch``; return the report (accuracies, chance, loss,
    style, examples)."""
    with open(os.path.join(heldout, "labels.json"), encoding="utf-8") as f:
        items = json.load(f)["items"][:limit]
    prompt = prompt_of(conversation_for(chat, style, question, model_cfg))
    correct = {name: 0 for name in world.ATTRIBUTES}
    answers, losses, start = [], [], time.time()
    for i in range(0, len(items), batch_size):
        batch = items[i : i + batch_size]
        images = torch.stack([chat.load_image(os.path.join(heldout, it["image"])) for it in batch])  # [B, 3, H, W]
        embeds = chat.encode_images(list(images))  # [B, N, D]
        convs = [conversation_for(chat, style, question, model_cfg) for _ in batch]
        texts = chat.answer_batch(convs, [[embeds[j : j + 1]] for j in range(len(batch))], config=generation)
        losses.append(heldout_loss(chat.model, images.to(chat.model.device), batch, style, prompt) * len(batch))
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
        "generation": dataclasses.asdict(generation),
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


def answer_one(
    chat: Chat, model_cfg: Any, image_path: str, style: str, question: str, generation: GenerationConfig
) -> str:
    """The answer about one image (through :meth:`Chat.answer`)."""
    conv = conversation_for(chat, style, question, model_cfg)
    return chat.answer(conv, [chat.encode_images([image_path])], config=generation).text


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
    add_generation_args(parser, EVAL_GENERATION)
    return check_generation_args(parser, parser.parse_args(argv))


def main(argv: list[str] | None = None) -> dict[str, Any] | str:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = Config(args)
    model, vis_processor = load_model(cfg)
    chat = Chat(model, vis_processor, device=model.device)
    generation = generation_options(args)
    if args.image:
        answer = answer_one(chat, cfg.model_cfg, args.image, args.prompt, args.question, generation)
        sys.stdout.write(f"Q: {args.question}\nA: {answer}\n")
        return answer
    report = evaluate(
        chat, cfg.model_cfg, args.heldout, args.prompt, args.limit, args.batch_size, args.question, generation
    )
    sys.stdout.write(format_report(report) + "\n")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    sys.exit(run_entry_point(main, prog="python -m minigpt4.tiny.evaluate"))
