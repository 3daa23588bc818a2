"""Readers of the benchmarks' published annotation formats, from local files, into :class:`EvalItem` lists.

- captions: the COCO caption format (``{"images": [{"id", "file_name"}], "annotations": [{"image_id",
  "caption"}]}``: COCO, the Karpathy test split as COCO-format ground truth, NoCaps) or Karpathy's split files
  (``{"images": [{"filename", "filepath"?, "split", "sentences": [{"raw"}], "cocoid"?|"imgid"?}]}``:
  ``dataset_coco.json``, ``dataset_flickr30k.json``);
- VQA: VQAv2 / OK-VQA, a questions file (``{"questions": [{"question_id", "image_id", "question"}]}``) and an
  annotations file (``{"annotations": [{"question_id", "image_id", "answers": [{"answer"}, ...]}]}``);
- GQA: ``{question id: {"imageId", "question", "answer"}}`` (e.g. ``testdev_balanced_questions.json``);
- POPE: JSON lines ``{"question_id", "image", "text", "label": "yes"|"no"}``.

Every error names the file and the item (question id, image id or line).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


class AnnotationError(ValueError):
    """An annotation file that cannot be used: the message names the file and the item."""


@dataclass(frozen=True)
class EvalItem:
    """One thing to answer: ``item_id`` (unique in its set), the image path, the question (None for captions),
    and the references: captions, the human answers, the GQA answer or the POPE label."""

    item_id: str
    image: str
    question: str | None
    references: tuple[str, ...]
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


def load_json(path: str) -> Any:
    if not os.path.isfile(path):
        raise AnnotationError(f"annotation file not found: {path}")
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as err:
            raise AnnotationError(f"{path}: not valid JSON ({err})") from None


def _field(record: Any, key: str, path: str, where: str) -> Any:
    if not isinstance(record, dict) or key not in record:
        raise AnnotationError(f"{path}: {where}: missing key {key!r}")
    return record[key]


# ----------------------------------------------------------------------------------------------------------
# captions
# ----------------------------------------------------------------------------------------------------------


def read_captions(path: str, images_dir: str, split: str = "test") -> list[EvalItem]:
    """Caption references per image, from a COCO-format or a Karpathy-format file (``split`` picks the
    Karpathy split; COCO-format files hold one split)."""
    data = load_json(path)
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise AnnotationError(
            f"{path}: not a caption annotation file: expected a JSON object with an 'images' list (COCO caption "
            "format with 'annotations', or Karpathy's split format with 'sentences' per image)"
        )
    if "annotations" in data:
        return _coco_captions(path, data, images_dir)
    if images and isinstance(images[0], dict) and "sentences" in images[0]:
        return _karpathy_captions(path, images, images_dir, split)
    raise AnnotationError(f"{path}: has 'images' but neither 'annotations' (COCO format) nor 'sentences' (Karpathy)")


def _coco_captions(path: str, data: dict[str, Any], images_dir: str) -> list[EvalItem]:
    files: dict[str, str] = {}
    for i, image in enumerate(data["images"]):
        files[str(_field(image, "id", path, f"images[{i}]"))] = str(_field(image, "file_name", path, f"images[{i}]"))
    captions: dict[str, list[str]] = {key: [] for key in files}
    for i, ann in enumerate(data["annotations"]):
        image_id = str(_field(ann, "image_id", path, f"annotations[{i}]"))
        if image_id not in captions:
            raise AnnotationError(f"{path}: annotations[{i}]: image_id {image_id} is not in 'images'")
        captions[image_id].append(str(_field(ann, "caption", path, f"annotations[{i}]")))
    empty = [key for key, refs in captions.items() if not refs]
    if empty:
        raise AnnotationError(f"{path}: image {empty[0]} has no caption ({len(empty)} such images)")
    return [EvalItem(key, os.path.join(images_dir, files[key]), None, tuple(captions[key])) for key in files]


def _karpathy_captions(path: str, images: list[Any], images_dir: str, split: str) -> list[EvalItem]:
    items = []
    for i, image in enumerate(images):
        where = f"images[{i}]"
        if _field(image, "split", path, where) != split:
            continue
        name = str(_field(image, "filename", path, where))
        rel = os.path.join(image["filepath"], name) if image.get("filepath") else name
        key = str(image.get("cocoid", image.get("imgid", name)))
        refs = tuple(str(_field(s, "raw", path, f"{where}.sentences")) for s in _field(image, "sentences", path, where))
        if not refs:
            raise AnnotationError(f"{path}: {where} ({name}): no sentences")
        items.append(EvalItem(key, os.path.join(images_dir, rel), None, refs))
    if not items:
        raise AnnotationError(f"{path}: no image of split {split!r}")
    return items


# ----------------------------------------------------------------------------------------------------------
# question answering
# ----------------------------------------------------------------------------------------------------------


def _list_of(data: Any, key: str, path: str) -> list[Any]:
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise AnnotationError(f"{path}: not a VQA {key} file: expected a JSON object with a {key!r} list")
    return data[key]


def read_vqa(questions_path: str, annotations_path: str, images_dir: str, image_name: str) -> list[EvalItem]:
    """VQAv2 / OK-VQA questions with their human answers; ``image_name`` formats the file name from
    ``image_id`` (``COCO_val2014_{image_id:012d}.jpg``).

    Raises:
        AnnotationError: a malformed file, or a question id in one file and not the other (naming both files).
    """
    questions = _list_of(load_json(questions_path), "questions", questions_path)
    annotations = _list_of(load_json(annotations_path), "annotations", annotations_path)
    answers: dict[str, tuple[str, ...]] = {}
    types: dict[str, str] = {}
    for i, ann in enumerate(annotations):
        qid = str(_field(ann, "question_id", annotations_path, f"annotations[{i}]"))
        entries = _field(ann, "answers", annotations_path, f"question {qid}")
        answers[qid] = tuple(str(_field(a, "answer", annotations_path, f"question {qid}")) for a in entries)
        if not answers[qid]:
            raise AnnotationError(f"{annotations_path}: question {qid}: no answers")
        if ann.get("question_type"):
            types[qid] = str(ann["question_type"])
    items = []
    for i, q in enumerate(questions):
        qid = str(_field(q, "question_id", questions_path, f"questions[{i}]"))
        if qid not in answers:
            raise AnnotationError(
                f"{questions_path}: question {qid} has no annotation in {annotations_path} (question id mismatch)"
            )
        image_id = _field(q, "image_id", questions_path, f"question {qid}")
        image = os.path.join(images_dir, _image_file(image_name, image_id, questions_path, qid))
        question = str(_field(q, "question", questions_path, f"question {qid}"))
        extra = {"question_type": types[qid]} if qid in types else {}
        items.append(EvalItem(qid, image, question, answers[qid], extra))
    unasked = sorted(set(answers) - {item.item_id for item in items})
    if unasked:
        raise AnnotationError(
            f"{annotations_path}: question {unasked[0]} is not in {questions_path} "
            f"(question id mismatch; {len(unasked)} such annotations)"
        )
    return items


def _image_file(pattern: str, image_id: Any, path: str, qid: str) -> str:
    try:
        return pattern.format(image_id=image_id)
    except (ValueError, KeyError) as err:
        raise AnnotationError(f"{path}: question {qid}: image name pattern {pattern!r} fails on {image_id!r}") from err


def read_gqa(path: str, images_dir: str) -> list[EvalItem]:
    """GQA balanced questions: ``{question id: {"imageId", "question", "answer"}}``; images ``<imageId>.jpg``."""
    data = load_json(path)
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise AnnotationError(
            f"{path}: not a GQA questions file: expected {{question id: {{imageId, question, answer}}}}"
        )
    items = []
    for qid, q in data.items():
        where = f"question {qid}"
        image = os.path.join(images_dir, f"{_field(q, 'imageId', path, where)}.jpg")
        items.append(
            EvalItem(str(qid), image, str(_field(q, "question", path, where)), (str(_field(q, "answer", path, where)),))
        )
    return items


def read_pope(path: str, images_dir: str) -> list[EvalItem]:
    """POPE questions (JSON lines; the published files are named ``*.json``)."""
    if not os.path.isfile(path):
        raise AnnotationError(f"annotation file not found: {path}")
    items, seen = [], set()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"line {lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise AnnotationError(f"{path}: {where}: not a JSON object (POPE files hold one per line)") from None
            qid = str(_field(record, "question_id", path, where))
            label = str(_field(record, "label", path, f"{where} (question {qid})")).strip().lower()
            if label not in ("yes", "no"):
                raise AnnotationError(f"{path}: {where} (question {qid}): label {label!r} is not yes or no")
            if qid in seen:
                raise AnnotationError(f"{path}: {where}: question id {qid} appears twice")
            seen.add(qid)
            image = os.path.join(images_dir, str(_field(record, "image", path, where)))
            items.append(EvalItem(qid, image, str(_field(record, "text", path, where)), (label,)))
    return items


def check_unique(items: Iterable[EvalItem], path: str) -> None:
    seen: set[str] = set()
    for item in items:
        if item.item_id in seen:
            raise AnnotationError(f"{path}: item id {item.item_id} appears twice")
        seen.add(item.item_id)
