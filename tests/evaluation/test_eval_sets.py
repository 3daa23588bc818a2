"""The tiny world's benchmark-format sets: readable by the benchmark readers, ten answers per question, POPE
balanced with negatives of each kind."""

from __future__ import annotations

import dataclasses
import json
import os

from minigpt4.evaluation.annotations import read_captions, read_pope, read_vqa
from minigpt4.evaluation.vqa import vqa_accuracy
from minigpt4.tasks import setup_task
from minigpt4.tiny import world


def test_sets_are_in_the_benchmark_formats(eval_sets, tiny_world):
    labels = {
        it["id"]: it["labels"] for it in json.load(open(os.path.join(tiny_world, "heldout", "labels.json")))["items"]
    }
    captions = read_captions(str(eval_sets / "captions_test.json"), os.path.join(tiny_world, "heldout"))
    assert len(captions) == len(labels) and all(os.path.isfile(c.image) for c in captions)
    assert all(len(c.references) == 11 for c in captions)
    for item in captions:
        assert all(world.judge(ref, labels[item.item_id])["colour"] for ref in item.references)

    vqa = read_vqa(
        str(eval_sets / "vqa_questions.json"), str(eval_sets / "vqa_annotations.json"), tiny_world, "{image_id}.jpg"
    )
    assert len(vqa) == 4 * len(labels) and all(len(q.references) == 10 for q in vqa)
    for q in vqa:
        truth = labels[str(int(q.item_id) // 10)][q.extra["question_type"]]
        assert vqa_accuracy(truth, q.references) == 1.0


def test_pope_sets_are_balanced(eval_sets, tiny_world):
    for setting in ("random", "popular", "adversarial"):
        items = read_pope(str(eval_sets / f"pope_{setting}.json"), os.path.join(tiny_world, "heldout", "image"))
        answers = [q.references[0] for q in items]
        assert answers.count("yes") == answers.count("no") == 60
        questions = {(q.image, q.question) for q in items}
        assert len(questions) == len(items)  # never the positive object asked as a negative
    adversarial = read_pope(str(eval_sets / "pope_adversarial.json"), "")
    for yes, no in zip(adversarial[::2], adversarial[1::2]):
        yes_words, no_words = yes.question.split()[3:5], no.question.split()[3:5]
        assert yes_words != no_words and (yes_words[0] == no_words[0] or yes_words[1] == no_words[1])


BENCHMARKS = ["coco_caption", "nocaps", "flickr30k", "vqav2", "okvqa", "gqa", "pope"]


def test_benchmark_eval_configs_load_once_their_paths_are_set():
    import pytest
    from omegaconf import OmegaConf

    from minigpt4.common.config import Config, ConfigError

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for name in BENCHMARKS:
        path = os.path.join(repo, "eval_configs", f"minigpt4_eval_{name}.yaml")
        with pytest.raises(ConfigError, match="is not set"):
            Config.load(path)  # no machine paths in the packaged configs
        raw = OmegaConf.load(path)
        options = ["model.ckpt=m.pth", "model.llama_model=llm", "model.vit_path=v.pth", "model.q_former_model=q.pth"]
        datasets = OmegaConf.to_container(raw.datasets, throw_on_missing=False)
        for dataset, section in datasets.items():
            options += [f"datasets.{dataset}.build_info.{k}=x" for k, v in section["build_info"].items() if v == "???"]
        cfg = Config.load(path, options)
        assert cfg.run_cfg.task in ("captioning", "vqa", "pope")
        assert cfg.evaluation_cfg.max_new_tokens
        generation = setup_task(cfg).generation_options()["config"]  # what answer_batch is given
        assert generation.do_sample is False and generation.max_new_tokens == cfg.evaluation_cfg.max_new_tokens


def test_evaluation_decoding_is_greedy_with_the_section_overrides():
    from minigpt4.conversation.generation import GREEDY
    from minigpt4.tasks.evaluation_tasks import VQATask

    section = {name: None for name in ("prompt", "max_new_tokens", "num_beams", "do_sample", "temperature")}
    section |= {"top_p": None, "min_length": None, "repetition_penalty": None, "length_penalty": None}
    section |= {"max_length": None}
    default = VQATask(section).generation_options()["config"]
    assert default == dataclasses.replace(GREEDY, max_new_tokens=VQATask.DEFAULT_MAX_NEW_TOKENS)
    tuned = VQATask(section | {"num_beams": 3, "max_new_tokens": 5}).generation_options()["config"]
    assert (tuned.num_beams, tuned.max_new_tokens, tuned.do_sample) == (3, 5, False)
