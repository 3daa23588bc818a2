"""A tiny MiniGPT-4 eval setup for the entry-point tests: random tiny assets in the released formats (from
``tests.models.builders``), a checkpoint of the trainable weights, and an eval YAML that points at them."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import yaml
from PIL import Image

from tests.models.builders import TINY_VIT, build_assets, tiny_model_cfg

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def write_tiny_eval_config(root: str | os.PathLike) -> Path:
    """Build the assets under ``root`` and return the path of an eval config using them (Vicuna v0 template)."""
    from minigpt4.models import MiniGPT4

    root = Path(root)
    assets = build_assets(str(root / "assets"))
    model_cfg = tiny_model_cfg(assets, max_txt_len=160, end_sym="###", prompt_template="###Human: {} ###Assistant: ")
    ckpt = root / "tiny_minigpt4.pth"
    torch.save({"model": MiniGPT4.from_config(model_cfg).trainable_state_dict()}, ckpt)
    image_size = TINY_VIT["image_size"]
    cfg = {
        "model": {**model_cfg, "ckpt": str(ckpt)},
        "preprocess": {
            "vis_processor": {"eval": {"name": "blip2_image_eval", "image_size": image_size}},
            "text_processor": {"eval": {"name": "blip_caption"}},
        },
        "run": {"task": "image_text_pretrain"},
    }
    path = root / "tiny_eval.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def write_images(folder: str | os.PathLike, names: dict[str, str] | None = None) -> list[Path]:
    """Small solid-colour PNGs: ``{file name: colour}`` (default: one per colour)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = names or {f"{c}.png": c for c in COLOURS}
    paths = []
    for name, colour in names.items():
        img = Image.new("RGB", (40, 40), COLOURS[colour])
        img.paste((250, 250, 250), (5, 5, 20, 20))
        img.save(folder / name)
        paths.append(folder / name)
    return paths
