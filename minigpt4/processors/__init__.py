"""Image and text processors, registered by name (``blip2_image_train``, ``blip2_image_eval``, ``blip_caption``)."""

from minigpt4.processors.base_processor import BaseProcessor
from minigpt4.processors.blip_processors import (
    Blip2ImageEvalProcessor,
    Blip2ImageTrainProcessor,
    BlipCaptionProcessor,
    to_rgb,
)

__all__ = [
    "BaseProcessor",
    "Blip2ImageEvalProcessor",
    "Blip2ImageTrainProcessor",
    "BlipCaptionProcessor",
    "to_rgb",
]
