"""Stage-2 ``cc_sbu_align``: ``<storage>/filter_cap.json`` + ``<storage>/image/<image_id>.jpg``.

``filter_cap.json`` is ``{"annotations": [{"image_id": "2", "caption": "..."}, ...]}``. As in the published
MiniGPT-4, the caption is the answer as written (no caption clean-up), and ``image_id`` in a sample is the
index of the image id in order of first appearance.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import Any

from PIL import Image
from torch.utils.data import Dataset

from minigpt4.common.config import InputFileError
from minigpt4.datasets.datasets.common import collate, derive_seed, open_rgb, seeded_torch
from minigpt4.datasets.datasets.webdataset_source import data_search_dirs

logger = logging.getLogger(__name__)

ANNOTATION_FILE = "filter_cap.json"
IMAGE_DIR = "image"
IMAGE_EXT = ".jpg"
SHOW_MISSING = 5


def resolve_data_dir(path: str) -> str:
    """``path`` itself if absolute; else the first of current directory / repository root that holds it."""
    path = os.path.expanduser(path)
    if os.path.isabs(path):
        return path
    candidates = [os.path.join(base, path) for base in data_search_dirs()]
    return next((c for c in candidates if os.path.isdir(c)), candidates[0])


class CCSBUAlignDataset(Dataset):
    """Map-style dataset of ``{"image", "answer", "image_id"}``.

    Args:
        storage: the folder holding ``filter_cap.json`` and ``image/``.
        vis_processor: PIL image -> tensor.
        text_processor: kept for the builder contract; the caption is used as written.
        skip_missing: drop annotations whose image file does not exist (logged) instead of failing.
    """

    def __init__(
        self,
        storage: str,
        vis_processor: Callable[[Image.Image], Any],
        text_processor: Callable[[str], str] | None = None,
        skip_missing: bool = False,
    ) -> None:
        self.storage = resolve_data_dir(storage)
        self.vis_root = os.path.join(self.storage, IMAGE_DIR)
        self.vis_processor = vis_processor
        self.text_processor = text_processor
        self.augment_seed: tuple[int, int] | None = None  # (seed, epoch), set by the train iterator
        annotations = self._load_annotations()
        self.img_ids: dict[str, int] = {}
        for ann in annotations:
            self.img_ids.setdefault(str(ann["image_id"]), len(self.img_ids))
        self.annotation = self._check_images(annotations, skip_missing)
        logger.info("cc_sbu_align: %d samples from %s", len(self.annotation), self.storage)

    def _load_annotations(self) -> list[dict[str, Any]]:
        path = os.path.join(self.storage, ANNOTATION_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"cc_sbu_align: annotation file not found: {path} (build_info.storage)")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            line = text.splitlines()[err.lineno - 1] if err.lineno <= len(text.splitlines()) else ""
            raise InputFileError(
                f"{path}:{err.lineno}:{err.colno}: not valid JSON at line {err.lineno}, column {err.colno}: "
                f"{err.msg}\n    {line[:200]}\n    {' ' * min(err.colno - 1, 200)}^"
            ) from None
        annotations = data.get("annotations") if isinstance(data, dict) else None
        if not isinstance(annotations, list):
            raise InputFileError(f'{path}: expected {{"annotations": [{{"image_id": ..., "caption": ...}}, ...]}}')
        for i, ann in enumerate(annotations):
            if not isinstance(ann, dict) or "image_id" not in ann or not isinstance(ann.get("caption"), str):
                raise InputFileError(f"{path}: annotation {i} needs 'image_id' and a string 'caption', got {ann!r}")
        return annotations

    def image_path(self, image_id: Any) -> str:
        return os.path.join(self.vis_root, f"{image_id}{IMAGE_EXT}")

    def _check_images(self, annotations: list[dict[str, Any]], skip_missing: bool) -> list[dict[str, Any]]:
        missing = [ann for ann in annotations if not os.path.isfile(self.image_path(ann["image_id"]))]
        if not missing:
            return annotations
        shown = ", ".join(self.image_path(ann["image_id"]) for ann in missing[:SHOW_MISSING])
        message = f"cc_sbu_align: {len(missing)} of {len(annotations)} listed images are missing (e.g. {shown})"
        if not skip_missing:
            raise FileNotFoundError(message + "; set build_info.skip_missing: true to train without them")
        logger.warning("%s; skipping them", message)
        missing_ids = {id(ann) for ann in missing}
        return [ann for ann in annotations if id(ann) not in missing_ids]

    def set_augment_seed(self, seed: int, epoch: int) -> None:
        """Make the random crop of sample ``i`` a function of (seed, epoch, i) (exact resume)."""
        self.augment_seed = (seed, epoch)

    def __len__(self) -> int:
        return len(self.annotation)

    def __getitem__(self, index: int) -> dict[str, Any]:
        ann = self.annotation[index]
        image = open_rgb(self.image_path(ann["image_id"]))
        seed = None if self.augment_seed is None else derive_seed("augment", *self.augment_seed, index)
        with seeded_torch(seed):
            image = self.vis_processor(image)
        return {"image": image, "answer": ann["caption"], "image_id": self.img_ids[str(ann["image_id"])]}

    def collater(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        return collate(samples)
