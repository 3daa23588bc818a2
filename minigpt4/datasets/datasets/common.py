"""Helpers shared by the datasets: per-sample seeded augmentation, bad-sample counting, collation."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError

from minigpt4.processors.blip_processors import to_rgb

logger = logging.getLogger(__name__)

META_KEY = "__meta__"  # carried in webdataset samples / batches for the train iterator; popped before the model
FLUSH_KEY = "__flush__"  # marks a meta-only item that reports a stream's last bad-sample counts


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any printable parts, identical in every process (no ``hash()`` randomisation)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@contextlib.contextmanager
def seeded_torch(seed: int | None) -> Iterator[None]:
    """Run the block with torch's CPU RNG seeded by ``seed`` and restore it afterwards (no-op for None).

    The image processors draw their random crops from torch's global RNG; seeding it per sample makes the
    augmentation a function of (seed, epoch, sample) alone, whatever the worker or the resume point.
    """
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # CPU only: torch.manual_seed would also reseed CUDA
        yield


class UnreadableImage(ValueError):
    """Bytes that are not an image we can decode: the message names the file, ``reason`` says why in plain words."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"this file is not an image we can read: {name} ({reason})")
        self.name = name
        self.reason = reason


def image_error_reason(err: BaseException) -> str:
    """Why PIL could not decode an image, in plain words (never the repr of an in-memory file)."""
    if isinstance(err, UnidentifiedImageError):
        return "not a known image format"
    if isinstance(err, Image.DecompressionBombError):
        return "too many pixels"
    text = str(err)
    if "truncated" in text.lower():
        return "the file is cut short or damaged"
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def open_rgb(fp: Any, name: str | None = None) -> Image.Image:
    """Open, fully decode (truncated data raises here) and convert an image file or file object to RGB.

    Raises:
        UnreadableImage: the bytes are not a decodable image; ``name`` (default: ``fp`` if it is a path) is in
            the message. A missing or unreadable file raises its ``OSError`` (which names the path) unchanged.
    """
    try:
        with Image.open(fp) as img:
            img.load()
            rgb = to_rgb(img)
            return rgb.copy() if rgb is img else rgb
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as err:
        label = name or (os.fspath(fp) if isinstance(fp, str | os.PathLike) else "image data")
        raise UnreadableImage(str(label), image_error_reason(err)) from err


class BadSampleCounter:
    """Counts skipped samples per reason; logs the first few of each reason with where they came from."""

    def __init__(self, source: str, warn_first: int = 3) -> None:
        self.source = source
        self.warn_first = warn_first
        self.counts: Counter[str] = Counter()
        self.enabled = True

    def add(self, reason: str, where: str, err: BaseException | str | None = None) -> None:
        if not self.enabled:
            return
        self.counts[reason] += 1
        log = logger.warning if self.counts[reason] <= self.warn_first else logger.debug
        log("%s: skipped a bad sample (%s) at %s: %s", self.source, reason, where, err)

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)


def collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors, turn ints into a tensor, keep other values as lists; keep the last sample's meta."""
    batch: dict[str, Any] = {}
    for key in samples[0]:
        if key == META_KEY:
            continue
        values = [s[key] for s in samples]
        if isinstance(values[0], torch.Tensor):
            batch[key] = torch.stack(values)
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            batch[key] = torch.tensor(values)
        else:
            batch[key] = values
    if META_KEY in samples[-1]:
        batch[META_KEY] = samples[-1][META_KEY]
    return batch
