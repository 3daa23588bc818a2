"""The images to describe: a folder of image files or webdataset tar shards, and a seeded sample of them."""

from __future__ import annotations

import io
import os
import random
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from minigpt4.common.config import ConfigError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@dataclass(frozen=True)
class ImageRef:
    """One image: its id (a file-name-safe string) and where it is (a file, or a member of a tar shard)."""

    id: str
    path: str
    member: str | None = None

    def to_json(self) -> dict[str, str]:
        return {"path": self.path} if self.member is None else {"shard": self.path, "member": self.member}

    def open(self) -> Image.Image:
        """The image as RGB (raises ``OSError`` / ``ValueError`` when it cannot be read)."""
        if self.member is None:
            with Image.open(self.path) as raw:
                return raw.convert("RGB")
        with tarfile.open(self.path) as tar:
            f = tar.extractfile(self.member)
            if f is None:
                raise OSError(f"{self.path}: {self.member} is not a file")
            data = f.read()
        with Image.open(io.BytesIO(data)) as raw:
            return raw.convert("RGB")


def ref_from_json(record_id: str, image: dict[str, Any]) -> ImageRef:
    if "shard" in image:
        return ImageRef(record_id, image["shard"], image["member"])
    return ImageRef(record_id, image["path"])


def _check_id(image_id: str, where: str) -> str:
    if not image_id or image_id.startswith(".") or any(c in image_id for c in "/\\\n"):
        raise ValueError(f"{where}: {image_id!r} cannot be an image id (it must be usable as a file name)")
    return image_id


def folder_images(folder: str) -> list[ImageRef]:
    """The image files of ``folder`` sorted by name; the id is the file name without its extension."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"images.folder: folder not found: {folder}")
    refs: dict[str, ImageRef] = {}
    for p in sorted(root.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
            image_id = _check_id(p.stem, str(p))
            if image_id in refs:
                raise ValueError(f"images.folder: two images share the id {image_id!r}: {refs[image_id].path}, {p}")
            refs[image_id] = ImageRef(image_id, str(p))
    return list(refs.values())


def shard_images(shards: str) -> list[ImageRef]:
    """The image members of webdataset shards in shard order; the id is the sample key (name up to the first
    dot). Only tar headers are read."""
    from minigpt4.datasets.datasets.webdataset_source import expand_shards

    refs: dict[str, ImageRef] = {}
    for shard in expand_shards(shards):
        try:
            with tarfile.open(shard) as tar:
                for info in tar:
                    name = os.path.basename(info.name)
                    key, dot, _ = name.partition(".")
                    if not info.isfile() or not dot or not name.lower().endswith(IMAGE_EXTENSIONS):
                        continue
                    image_id = _check_id(key, f"{shard}:{info.name}")
                    refs.setdefault(image_id, ImageRef(image_id, shard, info.name))
        except tarfile.TarError as err:
            raise ValueError(f"images.shards: {shard}: not a readable tar file: {err}") from err
    return list(refs.values())


def list_images(images_cfg: Any, source: str) -> list[ImageRef]:
    if bool(images_cfg.folder) == bool(images_cfg.shards):
        raise ConfigError(f"{source}: images: set exactly one of images.folder or images.shards")
    return folder_images(images_cfg.folder) if images_cfg.folder else shard_images(images_cfg.shards)


def sample(refs: Sequence[ImageRef], size: int | None, seed: int) -> list[ImageRef]:
    """A seeded random sample of ``size`` images (all of them, shuffled, when None or more than there are)."""
    ordered = sorted(refs, key=lambda r: r.id)
    rng = random.Random(seed)
    return rng.sample(ordered, min(size or len(ordered), len(ordered)))
