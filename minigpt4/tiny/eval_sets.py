"""Benchmark-format evaluation sets of the tiny world, from its held-out images and their attribute labels.

``python -m minigpt4.tiny.eval_sets --world tiny_world`` writes ``tiny_world/eval/``::

    captions_test.json          COCO caption format: every way the world describes each image (11 references)
    vqa_questions.json          VQAv2 questions: "What colour is the shape?", "What shape is in the image?",
    vqa_annotations.json          "Where is the shape?", "What size is the group?", 10 answers each
    pope_random.json            POPE JSON lines, "Is there a red circle in the image?": per image one question
    pope_popular.json             about its own object (yes) and one about an absent object (no): a random one,
    pope_adversarial.json         the most frequent absent one, or one sharing the shape or the colour

The images stay where they are (``tiny_world/heldout/image/<id>.jpg``). The world has no counts (one group of
identical shapes per image), so there is no "How many" question. Chance levels: VQA 1/5 (colour, position),
1/4 (shape), 1/2 (size); POPE accuracy 0.5, and F1 0.667 for always answering yes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
from collections import Counter
from typing import Any

from minigpt4.tiny import world

logger = logging.getLogger(__name__)

EVAL_DIR = "eval"
VQA_QUESTIONS = {
    "colour": "What colour is the shape?",
    "shape": "What shape is in the image?",
    "position": "Where is the shape?",
    "size": "What size is the group?",
}
HUMAN_ANSWERS = 10
VARIANT_ANSWERS = 3  # of the ten, how many use the other wording (plural shape, phrase of the position)
POPE_SETTINGS = ("random", "popular", "adversarial")


def load_heldout(world_dir: str) -> list[dict[str, Any]]:
    with open(os.path.join(world_dir, "heldout", "labels.json"), encoding="utf-8") as f:
        return json.load(f)["items"]


def all_descriptions(labels: dict[str, str]) -> list[str]:
    """Every caption template of the world, filled in for one image."""
    scene = {**labels, "where": world.POSITION_PHRASE[labels["position"]]}
    scene["detail"] = world.POSITION_DETAIL[labels["position"]]
    return [t.format(**scene) for templates in world.CAPTION_TEMPLATES.values() for t in templates]


def caption_set(items: list[dict[str, Any]]) -> dict[str, Any]:
    images = [{"id": int(it["id"]), "file_name": it["image"]} for it in items]
    annotations = []
    for it in items:
        for text in all_descriptions(it["labels"]):
            annotations.append({"image_id": int(it["id"]), "id": len(annotations), "caption": text})
    return {"info": {"description": "tiny world captions"}, "images": images, "annotations": annotations}


def _answers(attribute: str, value: str) -> list[str]:
    if attribute == "shape":
        variant = f"{value}s"
    elif attribute == "position":
        variant = world.POSITION_PHRASE[value]
    else:
        variant = value
    return [value] * (HUMAN_ANSWERS - VARIANT_ANSWERS) + [variant] * VARIANT_ANSWERS


def vqa_set(items: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    questions, annotations = [], []
    for it in items:
        image_id = int(it["id"])
        for k, (attribute, text) in enumerate(VQA_QUESTIONS.items()):
            qid = image_id * 10 + k
            questions.append({"image_id": image_id, "question": text, "question_id": qid})
            answers = _answers(attribute, it["labels"][attribute])
            annotations.append(
                {
                    "question_id": qid,
                    "image_id": image_id,
                    "question_type": attribute,
                    "answer_type": "other",
                    "multiple_choice_answer": it["labels"][attribute],
                    "answers": [
                        {"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)
                    ],
                }
            )
    return {"questions": questions}, {"annotations": annotations}


def _objects() -> list[tuple[str, str]]:
    return [(c, s) for c in world.COLOURS for s in world.SHAPES]


def negative(own: tuple[str, str], setting: str, popular: list[tuple[str, str]], rng: random.Random) -> tuple[str, str]:
    """An object absent from the image: random, the most frequent absent one, or one sharing an attribute."""
    others = [o for o in _objects() if o != own]
    if setting == "random":
        return rng.choice(others)
    if setting == "popular":
        return next(o for o in popular if o != own)
    similar = [o for o in others if o[0] == own[0] or o[1] == own[1]]
    return rng.choice(similar)


def pope_sets(items: list[dict[str, Any]], seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    counts = Counter((it["labels"]["colour"], it["labels"]["shape"]) for it in items)
    popular = sorted(_objects(), key=lambda o: (-counts[o], o))
    sets = {}
    for setting in POPE_SETTINGS:
        rng = random.Random(f"{seed}-{setting}")
        lines = []
        for it in items:
            own = (it["labels"]["colour"], it["labels"]["shape"])
            image = os.path.basename(it["image"])
            for obj, label in ((own, "yes"), (negative(own, setting, popular, rng), "no")):
                text = f"Is there a {obj[0]} {obj[1]} in the image?"
                lines.append({"question_id": len(lines) + 1, "image": image, "text": text, "label": label})
        sets[setting] = lines
    return sets


def write_eval_sets(world_dir: str, out_dir: str | None = None) -> str:
    """Write the sets under ``out_dir`` (default ``<world>/eval``); returns the folder."""
    out_dir = out_dir or os.path.join(world_dir, EVAL_DIR)
    os.makedirs(out_dir, exist_ok=True)
    items = load_heldout(world_dir)
    questions, annotations = vqa_set(items)
    files: dict[str, Any] = {
        "captions_test.json": caption_set(items),
        "vqa_questions.json": questions,
        "vqa_annotations.json": annotations,
    }
    for name, content in files.items():
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            json.dump(content, f, indent=1)
    for setting, lines in pope_sets(items).items():
        with open(os.path.join(out_dir, f"pope_{setting}.json"), "w", encoding="utf-8") as f:
            f.writelines(json.dumps(line) + "\n" for line in lines)
    logger.info("wrote the evaluation sets of %d held-out images to %s", len(items), out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description="Write the tiny world's benchmark-format evaluation sets.")
    parser.add_argument("--world", default="tiny_world", help="the tiny world folder (default: tiny_world)")
    parser.add_argument("--out", default=None, help="output folder (default: <world>/eval)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    return write_eval_sets(args.world, args.out)


if __name__ == "__main__":
    main()
