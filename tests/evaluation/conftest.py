"""Fixtures of the evaluation tests: the tiny world's benchmark-format sets and eval configs that use them with a
tiny random model (its answers are meaningless, which is fine for checking the pipeline)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from minigpt4.tiny.eval_sets import write_eval_sets
from tests.cli.tiny_chat import write_tiny_eval_config


@pytest.fixture(scope="session")
def eval_sets(tiny_world: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(write_eval_sets(tiny_world, str(tmp_path_factory.mktemp("eval_sets"))))


@pytest.fixture(scope="session")
def tiny_model_cfg_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    os.environ["HF_HUB_OFFLINE"] = "1"
    return write_tiny_eval_config(tmp_path_factory.mktemp("tiny_model"))


def dataset_sections(task: str, sets: Path, world: str) -> dict:
    images = os.path.join(world, "heldout", "image")
    if task == "captioning":
        return {
            "coco_caption": {
                "build_info": {
                    "annotations": str(sets / "captions_test.json"),
                    "images": os.path.join(world, "heldout"),
                }
            }
        }
    if task == "vqa":
        info = {
            "questions": str(sets / "vqa_questions.json"),
            "annotations": str(sets / "vqa_annotations.json"),
            "images": images,
            "image_name": "{image_id}.jpg",
        }
        return {"vqav2": {"build_info": info}}
    return {
        f"pope_{s}": {"build_info": {"annotations": str(sets / f"pope_{s}.json"), "images": images}}
        for s in ("random", "adversarial")
    }


@pytest.fixture(scope="session")
def write_eval_config(tiny_model_cfg_path: Path, eval_sets: Path, tiny_world: str):
    """``write(task, folder, **evaluation keys) -> config path`` for a task on the tiny sets."""

    def write(task: str, folder: Path, datasets: dict | None = None, **evaluation) -> Path:
        cfg = yaml.safe_load(tiny_model_cfg_path.read_text())
        cfg["datasets"] = datasets if datasets is not None else dataset_sections(task, eval_sets, tiny_world)
        cfg["evaluation"] = {"max_new_tokens": 4, "progress_bar": False, **evaluation}
        cfg["run"] = {"task": task, "device": "cpu", "batch_size_eval": 4, "output_dir": str(folder), "job_name": "job"}
        path = folder / f"{task}.yaml"
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return path

    return write
