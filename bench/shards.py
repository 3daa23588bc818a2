"""Synthetic stage-1 data in img2dataset's webdataset format (``KEY.jpg``, ``KEY.json``, ``KEY.txt``).

Images are random-sized (256-512 px a side) JPEGs of smooth colour fields with a few rectangles, so JPEG decode
costs what it costs for photos of that size; captions are 8-16 words drawn from a fixed word list.
"""

from __future__ import annotations

import io
import json
import os
import random
import tarfile

import numpy as np
from PIL import Image

WORDS = (
    "a photo of the red blue green small large dog cat house tree car road sky water person man woman child "
    "sitting standing next to on in with under over near white black yellow old new wooden stone field beach "
    "city street window table chair flowers mountain river boat bird horse playing walking holding looking"
).split()


def caption(rng: random.Random, min_words: int = 8, max_words: int = 16) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(min_words, max_words)))


def jpeg_bytes(rng: random.Random, min_side: int = 256, max_side: int = 512, quality: int = 90) -> bytes:
    w, h = rng.randint(min_side, max_side), rng.randint(min_side, max_side)
    nprng = np.random.default_rng(rng.getrandbits(32))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([np.sin(xx / rng.uniform(20, 80) + c) * np.cos(yy / rng.uniform(20, 80) - c) for c in range(3)], -1)
    img = (127.5 * (base + 1) + nprng.normal(0, 12, base.shape)).clip(0, 255).astype(np.uint8)
    for _ in range(rng.randint(1, 4)):
        x0, y0 = rng.randrange(w // 2), rng.randrange(h // 2)
        img[y0 : y0 + rng.randint(20, h // 2), x0 : x0 + rng.randint(20, w // 2)] = [
            rng.randrange(256) for _ in range(3)
        ]
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def write_shards(out_dir: str, num_shards: int, per_shard: int, seed: int = 0) -> str:
    """Write ``num_shards`` tars of ``per_shard`` samples; returns the brace pattern ``out_dir/{00000..N}.tar``."""
    os.makedirs(out_dir, exist_ok=True)
    rng = random.Random(seed)
    for s in range(num_shards):
        with tarfile.open(os.path.join(out_dir, f"{s:05d}.tar"), "w") as tar:
            for i in range(per_shard):
                key = f"{s:05d}{i:04d}"
                cap = caption(rng)
                _add(tar, f"{key}.jpg", jpeg_bytes(rng))
                _add(tar, f"{key}.json", json.dumps({"caption": cap, "key": key}).encode())
                _add(tar, f"{key}.txt", cap.encode())
    return os.path.join(out_dir, f"{{00000..{num_shards - 1:05d}}}.tar")
