"""Helpers that write real webdataset shards and cc_sbu_align folders for the data tests."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image


def image_bytes(
    fmt: str = "JPEG",
    size: tuple[int, int] = (24, 20),
    color: tuple[int, int, int] = (200, 30, 60),
    noise: bool = False,
) -> bytes:
    buf = io.BytesIO()
    img = Image.new("RGB", size, color)
    if noise:
        img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    img.save(buf, format=fmt)
    return buf.getvalue()


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def good_members(key: str, caption: str, fmt: str = "JPEG", with_txt: bool = True) -> list[tuple[str, bytes]]:
    ext = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}[fmt]
    members = [(f"{key}.{ext}", image_bytes(fmt, color=(len(caption) * 7 % 255, 90, 120)))]
    members.append((f"{key}.json", json.dumps({"caption": caption, "url": f"http://x/{key}"}).encode()))
    if with_txt:
        members.append((f"{key}.txt", caption.encode()))
    return members


def write_good_shards(root: Path, n_shards: int, per_shard: int, prefix: str = "") -> list[str]:
    """Shards ``root/{00000..}.tar`` whose captions are ``"{prefix}s{shard} i{item}"``; returns all captions."""
    captions, formats = [], ["JPEG", "PNG", "WEBP"]
    for s in range(n_shards):
        members = []
        for i in range(per_shard):
            caption = f"{prefix}s{s} i{i}"
            captions.append(caption)
            members += good_members(f"{s:05d}{i:04d}", caption, formats[(s + i) % 3])
        write_tar(root / f"{s:05d}.tar", members)
    return captions


def write_align_folder(root: Path, captions: dict[str, str], missing: tuple[str, ...] = ()) -> Path:
    (root / "image").mkdir(parents=True, exist_ok=True)
    annotations = [{"image_id": k, "caption": c} for k, c in captions.items()]
    (root / "filter_cap.json").write_text(json.dumps({"annotations": annotations}))
    for key in captions:
        if key not in missing:
            Image.new("RGB", (30, 26), (10 * len(key), 100, 50)).save(root / "image" / f"{key}.jpg")
    return root
