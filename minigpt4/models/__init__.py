"""Models: importing this package registers them (``mini_gpt4`` / ``minigpt4``)."""

from minigpt4.models.base_model import BaseModel, freeze
from minigpt4.models.blip2 import Blip2Base
from minigpt4.models.mini_gpt4 import MiniGPT4, MiniGPT4Config

__all__ = ["BaseModel", "Blip2Base", "MiniGPT4", "MiniGPT4Config", "freeze"]
