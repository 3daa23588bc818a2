"""Bad benchmark input: a missing image, an annotation file of the wrong format, a question id mismatch, an
unreadable image. Each fails naming the file and the item, or, where asked for, is a counted skip."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import evaluate
from minigpt4.evaluation.annotations import AnnotationError, read_captions, read_pope, read_vqa
from tests.evaluation.conftest import dataset_sections


def _copy_images(world: str, dest: Path) -> Path:
    shutil.copytree(Path(world) / "heldout" / "image", dest)
    return dest


def test_a_missing_image_is_named_or_skipped_and_counted(write_eval_config, eval_sets, tiny_world, tmp_path):
    images = _copy_images(tiny_world, tmp_path / "images")
    (images / "1.jpg").unlink()
    sections = dataset_sections("pope", eval_sets, tiny_world)
    sections = {"pope_random": sections["pope_random"]}
    sections["pope_random"]["build_info"]["images"] = str(images)
    cfg = write_eval_config("pope", tmp_path / "out", datasets=sections, limit=4)
    with pytest.raises(AnnotationError, match=r"pope_random\.json: item 3: image file not found: .*1\.jpg"):
        evaluate.main(["--cfg-path", str(cfg)])
    metrics = evaluate.main(["--cfg-path", str(cfg), "--options", "datasets.pope_random.skip_missing_images=True"])
    assert metrics["pope_random/test"]["skipped_missing_images"] == 2  # image 1 has two questions
    ids = [r["id"] for r in map(json.loads, (tmp_path / "out" / "job" / "predictions.jsonl").read_text().splitlines())]
    assert ids == ["1", "2", "5", "6"]


def test_an_unreadable_image_is_named(write_eval_config, eval_sets, tiny_world, tmp_path):
    images = _copy_images(tiny_world, tmp_path / "images")
    (images / "0.jpg").write_bytes(b"not a jpeg")
    sections = {"pope_random": dataset_sections("pope", eval_sets, tiny_world)["pope_random"]}
    sections["pope_random"]["build_info"]["images"] = str(images)
    cfg = write_eval_config("pope", tmp_path / "out", datasets=sections, limit=2)
    with pytest.raises(AnnotationError, match=r"pope_random/test: item 1: cannot read image .*0\.jpg"):
        evaluate.main(["--cfg-path", str(cfg)])


def test_an_annotation_file_of_the_wrong_format_is_named(eval_sets, tmp_path):
    pope = str(eval_sets / "pope_random.json")
    with pytest.raises(AnnotationError, match=r"pope_random\.json: not valid JSON"):
        read_captions(pope, str(tmp_path))
    with pytest.raises(AnnotationError, match=r"vqa_questions\.json: not a caption annotation file"):
        read_captions(str(eval_sets / "vqa_questions.json"), str(tmp_path))
    with pytest.raises(AnnotationError, match=r"captions_test\.json: not a VQA questions file"):
        read_vqa(str(eval_sets / "captions_test.json"), str(eval_sets / "vqa_annotations.json"), "", "{image_id}.jpg")
    bad = tmp_path / "pope.json"
    bad.write_text('{"question_id": 1, "image": "0.jpg", "text": "Is there a cat?", "label": "maybe"}\n')
    with pytest.raises(AnnotationError, match=r"pope\.json: line 1 \(question 1\): label 'maybe' is not yes or no"):
        read_pope(str(bad), "")


def test_a_question_id_mismatch_names_the_question_and_both_files(eval_sets, tmp_path):
    annotations = json.loads((eval_sets / "vqa_annotations.json").read_text())
    dropped = annotations["annotations"].pop(5)
    short = tmp_path / "answers.json"
    short.write_text(json.dumps(annotations))
    questions = str(eval_sets / "vqa_questions.json")
    with pytest.raises(
        AnnotationError, match=rf"question {dropped['question_id']} has no annotation in .*answers\.json"
    ):
        read_vqa(questions, str(short), "", "{image_id}.jpg")
    data = json.loads((eval_sets / "vqa_questions.json").read_text())
    data["questions"] = data["questions"][1:]
    fewer = tmp_path / "questions.json"
    fewer.write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match=r"vqa_annotations\.json: question 0 is not in .*questions\.json"):
        read_vqa(str(fewer), str(eval_sets / "vqa_annotations.json"), "", "{image_id}.jpg")


def test_a_caption_annotation_for_an_unknown_image_is_named(tmp_path):
    path = tmp_path / "captions.json"
    path.write_text(
        json.dumps({"images": [{"id": 1, "file_name": "1.jpg"}], "annotations": [{"image_id": 2, "caption": "x"}]})
    )
    with pytest.raises(AnnotationError, match=r"captions\.json: annotations\[0\]: image_id 2 is not in 'images'"):
        read_captions(str(path), str(tmp_path))
