"""BLIP-2 image processors and the BLIP caption processor, as MiniGPT-4 uses them.

- ``blip2_image_train``: random resized crop (scale ``min_scale``-``max_scale``, bicubic), tensor, CLIP normalise.
- ``blip2_image_eval``: bicubic resize to ``image_size`` x ``image_size``, tensor, CLIP normalise.
- ``blip_caption``: ``prompt`` + the BLIP caption clean-up (lower case, some punctuation to spaces, collapsed
  spaces, at most ``max_words`` words).

Every image processor first converts its input to RGB with :func:`to_rgb`, whatever the PIL mode.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import InterpolationMode

from minigpt4.common.constants import CLIP_MEAN, CLIP_STD
from minigpt4.common.registry import registry
from minigpt4.processors.base_processor import BaseProcessor

logger = logging.getLogger(__name__)

_PUNCTUATION = re.compile(r"([.!\"()*#:;~])")
_MULTI_SPACE = re.compile(r"\s{2,}")
_UINT16_TO_UINT8 = 65535.0 / 255.0


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit RGB.

    16- and 32-bit integer modes (``I;16*``, ``I``) are scaled from the 16-bit range to 0-255 (clipped),
    float mode ``F`` is read as 0-1 if its maximum is at most 1 and as 0-255 otherwise; palette and alpha
    modes drop the alpha channel as ``Image.convert("RGB")`` does.
    """
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I"):
        arr = np.asarray(img, dtype=np.float64) / _UINT16_TO_UINT8
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8)).convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        if arr.size and np.nanmax(arr) <= 1.0:
            arr = arr * 255.0
        arr = np.nan_to_num(arr)
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8)).convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("RGB")


@dataclass
class BlipImageTrainConfig:
    image_size: int = 224
    mean: Optional[List[float]] = None  # None: CLIP mean
    std: Optional[List[float]] = None  # None: CLIP std
    min_scale: float = 0.5
    max_scale: float = 1.0


@dataclass
class BlipImageEvalConfig:
    image_size: int = 224
    mean: Optional[List[float]] = None
    std: Optional[List[float]] = None


@dataclass
class BlipCaptionConfig:
    prompt: str = ""
    max_words: int = 50


class BlipImageBaseProcessor(BaseProcessor):
    """RGB conversion, a geometric transform (set by subclasses), ``ToTensor`` and CLIP normalisation."""

    def __init__(self, resize: torch.nn.Module, mean: Optional[List[float]], std: Optional[List[float]]) -> None:
        self.mean = tuple(CLIP_MEAN if mean is None else mean)
        self.std = tuple(CLIP_STD if std is None else std)
        self.transform = transforms.Compose([resize, transforms.ToTensor(), transforms.Normalize(self.mean, self.std)])

    def __call__(self, item: Image.Image) -> torch.Tensor:
        return self.transform(to_rgb(item))  # [3, image_size, image_size]


@registry.register_processor("blip2_image_train")
class Blip2ImageTrainProcessor(BlipImageBaseProcessor):
    """Training transform: random resized crop of ``min_scale``-``max_scale`` of the area, bicubic."""

    config_schema = BlipImageTrainConfig

    def __init__(
        self,
        image_size: int = 224,
        mean: Optional[List[float]] = None,
        std: Optional[List[float]] = None,
        min_scale: float = 0.5,
        max_scale: float = 1.0,
    ) -> None:
        self.image_size = image_size
        crop = transforms.RandomResizedCrop(
            image_size, scale=(min_scale, max_scale), interpolation=InterpolationMode.BICUBIC
        )
        super().__init__(crop, mean, std)


@registry.register_processor("blip2_image_eval")
class Blip2ImageEvalProcessor(BlipImageBaseProcessor):
    """Evaluation transform: bicubic resize to a square ``image_size`` (aspect ratio not kept)."""

    config_schema = BlipImageEvalConfig

    def __init__(
        self, image_size: int = 224, mean: Optional[List[float]] = None, std: Optional[List[float]] = None
    ) -> None:
        self.image_size = image_size
        resize = transforms.Resize((image_size, image_size), interpolation=InterpolationMode.BICUBIC)
        super().__init__(resize, mean, std)


@registry.register_processor("blip_caption")
class BlipCaptionProcessor(BaseProcessor):
    """``prompt + pre_caption(caption)``."""

    config_schema = BlipCaptionConfig

    def __init__(self, prompt: str = "", max_words: int = 50) -> None:
        self.prompt = prompt
        self.max_words = max_words

    def __call__(self, caption: str) -> str:
        return self.prompt + self.pre_caption(caption)

    def pre_caption(self, caption: str) -> str:
        """Lower case, ``.!"()*#:;~`` to spaces, runs of whitespace to one space, strip, truncate to max_words."""
        caption = _PUNCTUATION.sub(" ", caption.lower())
        caption = _MULTI_SPACE.sub(" ", caption)
        caption = caption.rstrip("\n").strip(" ")
        words = caption.split(" ")
        if len(words) > self.max_words:
            caption = " ".join(words[: self.max_words])
        return caption
