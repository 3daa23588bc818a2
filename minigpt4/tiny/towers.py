"""The tiny world's pretrained vision towers: an EVA-style ViT, ``ln_vision``, the Q-Former and its queries.

MiniGPT-4 keeps EVA-CLIP and the BLIP-2 Q-Former frozen and trains only the projection into the LLM, so the
towers must already carry visual information, as the published ones do. Here they get it from a short
*supervised* pretraining of the ViT, ``ln_vision``, the Q-Former and ``query_tokens`` together, with throw-away
linear classifiers:

- per query output: one attribute (query ``q`` names attribute ``q mod 4``: shape, colour, position, size), the
  same classifier for all the queries of an attribute. Every image token MiniGPT-4 hands to the LLM then stands
  for one attribute, as one word does, and the linear projection can map each onto the region of the LLM's
  embeddings where the words for that attribute lie (see the README for what happened when every query carried
  every attribute);
- per ViT patch: the shape, colour and position of the shapes on that patch (class 0 = background). This dense,
  local signal is what makes training fast: a ViT trained only from image-level labels has to discover where the
  object is before it can learn what it is, which took thousands of steps; with patch labels the ViT tokens become
  informative within a hundred steps and the queries only have to pool them.

Supervised classification was chosen over a contrastive objective because it reaches perfect held-out accuracy
on shape, colour and position in about a minute on one CPU core, where contrastive learning needs large batches.
The classifiers are not saved.

The weights are saved in the published formats: ``eva_vit_tiny.pth`` is a plain state dict with the ``eva_vit_g``
key names, ``qformer_tiny.pth`` is a BLIP-2 style ``{"model": {"Qformer.*", "query_tokens", "ln_vision.*"}}``.
"""

from __future__ import annotations

import io
import logging
import math
import random
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from minigpt4.common.constants import CLIP_MEAN, CLIP_STD, IGNORE_INDEX
from minigpt4.common.logger import progress
from minigpt4.tiny import world

logger = logging.getLogger(__name__)

#: attributes also taught per ViT patch (dense supervision: local, so the ViT learns them fast)
PATCH_ATTRIBUTES = ("shape", "colour", "position")
COSINE_SCALE = 10.0


@dataclass
class TowerConfig:
    """Schedule of the towers' pretraining (their sizes come from the tiny model's default YAML)."""

    images: int = 3000
    steps: int = 700
    batch_size: int = 32
    lr: float = 3e-3
    warmup: int = 20
    log_accuracy: int = 0  # > 0: log held-out accuracy every that many steps


def training_steps(name: str, steps: int) -> Any:
    """``range(steps)`` as a progress bar with the time left (on an interactive terminal; silent elsewhere)."""
    return progress(range(steps), total=steps, desc=f"{name} pretraining")


def log_milestone(name: str, step: int, steps: int, loss: float, start: float, parts: int = 4) -> None:
    """Log the first and last step and every ``1/parts`` of the way (what a log file keeps of the bar)."""
    if step == 0 or step == steps - 1 or (step + 1) % max(1, steps // parts) == 0:
        logger.info("%s step %d/%d loss %.3f (%.0fs)", name, step + 1, steps, loss, time.time() - start)


def warmup_cosine(step: int, warmup: int, steps: int) -> float:
    """LR multiplier: linear warmup over ``warmup`` steps, then cosine decay to 0 at ``steps``."""
    return min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))


def to_tensor(image: Image.Image) -> Tensor:
    """What ``blip2_image_eval`` does to an image already of the model's size: tensor, CLIP normalisation."""
    x = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(image.height, image.width, 3)
    x = x.permute(2, 0, 1).float() / 255.0  # [3, H, W]
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    return (x - mean) / std


class CosineHead(nn.Module):
    """Logits ``scale * cos(feature, class vector)``: every attribute must take a real share of the feature's
    direction (a plain linear head is content with a faint signal for the easy ones, e.g. colour, which the
    projection into the LLM then has to amplify).

    Args:
        width: feature width.
        classes: number of classes.
        scale: the fixed logit scale.
    """

    def __init__(self, width: int, classes: int, scale: float = COSINE_SCALE) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, width) * 0.02)
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * F.normalize(x, dim=-1) @ F.normalize(self.weight, dim=-1).t()


class Towers(nn.Module):
    """ViT + ``ln_vision`` + Q-Former + ``query_tokens`` (named as in MiniGPT-4) and throw-away attribute heads.

    Args:
        model_cfg: the tiny model's ``model`` section (vit_* and qformer_* sizes, image_size).
    """

    def __init__(self, model_cfg: Any) -> None:
        super().__init__()
        from minigpt4.models.blip2 import Blip2Base, qformer_sizes, vit_sizes

        self.visual_encoder, self.ln_vision = Blip2Base.init_vision_encoder(
            model_cfg.vit_model,
            model_cfg.image_size,
            0.0,
            False,
            "fp32",
            **vit_sizes(model_cfg),
        )
        self.Qformer, self.query_tokens = Blip2Base.init_Qformer(
            model_cfg.num_query_token,
            self.visual_encoder.num_features,
            model_cfg.cross_attention_freq,
            **qformer_sizes(model_cfg),
        )
        width, vit_width = model_cfg.qformer_hidden_size, self.visual_encoder.num_features
        self.heads = nn.ModuleDict({name: CosineHead(width, len(values)) for name, values in world.ATTRIBUTES.items()})
        self.patch_heads = nn.ModuleDict(
            {name: nn.Linear(vit_width, len(world.ATTRIBUTES[name]) + 1) for name in PATCH_ATTRIBUTES}
        )

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        """Attribute logits of every query output ``[B, K, Q]``, and per-patch ones (``patch_<name>``, 0 = none)."""
        image_embeds = self.ln_vision(self.visual_encoder(image))  # [B, 1 + P, W]
        queries = self.query_tokens.expand(image.shape[0], -1, -1)  # [B, Q, C]
        out = self.Qformer.bert(query_embeds=queries, encoder_hidden_states=image_embeds).last_hidden_state
        logits = {name: head(out).transpose(1, 2) for name, head in self.heads.items()}  # [B, K, Q]
        for name, head in self.patch_heads.items():
            logits[f"patch_{name}"] = head(image_embeds[:, 1:]).transpose(1, 2)  # [B, K + 1, P]
        return logits

    def vit_state_dict(self) -> dict[str, Tensor]:
        """``eva_vit_g.pth`` format: the ViT's plain state dict."""
        return {k: v.detach().clone() for k, v in self.visual_encoder.state_dict().items()}

    def blip2_checkpoint(self) -> dict[str, dict[str, Tensor]]:
        """BLIP-2 format: ``{"model": {"Qformer.*", "query_tokens", "ln_vision.*"}}`` (heads left out)."""
        state = {
            k: v.detach().clone() for k, v in self.state_dict().items() if k.startswith(("Qformer.", "ln_vision."))
        }
        state["query_tokens"] = self.query_tokens.detach().clone()
        return {"model": state}


def _dataset(n: int, image_size: int, patch_size: int, seed: int) -> tuple[Tensor, dict[str, Tensor]]:
    """``n`` JPEG-round-tripped scenes as normalised tensors ``[n, 3, S, S]`` and their labels.

    Labels: per attribute ``[n]``, and per ViT patch ``patch_<name>`` ``[n, P]`` (value index + 1 on the patches
    the scene's shapes occupy, 0 elsewhere).
    """
    rng = random.Random(seed)
    grid = image_size // patch_size
    if grid != world.GRID:
        logger.warning(
            "the ViT sees %d x %d patches, the world draws on %d x %d cells", grid, grid, world.GRID, world.GRID
        )
    images, labels = [], {name: [] for name in [*world.ATTRIBUTES, *(f"patch_{a}" for a in PATCH_ATTRIBUTES)]}
    for _ in range(n):
        scene = world.sample_scene(rng)
        picture, cells = world.render(scene, image_size, rng, with_cells=True)
        picture = Image.open(io.BytesIO(world.jpeg_bytes(picture))).convert("RGB")
        images.append(to_tensor(picture))
        occupied = torch.zeros(grid * grid, dtype=torch.long)
        for row, col in cells:
            occupied[(row * grid) // world.GRID * grid + (col * grid) // world.GRID] = 1
        for name, values in world.ATTRIBUTES.items():
            labels[name].append(values.index(getattr(scene, name)))
        for name in PATCH_ATTRIBUTES:
            target = occupied * (world.ATTRIBUTES[name].index(getattr(scene, name)) + 1)
            if name != "colour":  # the colour head also tells shapes from background; the others only name them
                target = target.masked_fill(occupied == 0, IGNORE_INDEX)
            labels[f"patch_{name}"].append(target)
    return torch.stack(images), {
        k: torch.stack(v) if k.startswith("patch_") else torch.tensor(v) for k, v in labels.items()
    }


def query_attribute(num_queries: int) -> Tensor:
    """``[Q]``: the index (in ``world.ATTRIBUTES``) of the attribute each query output is taught: query ``q``
    carries attribute ``q mod 4`` (shape, colour, position, size, shape, ...)."""
    return torch.arange(num_queries) % len(world.ATTRIBUTES)


def _per_query(name: str, target: Tensor, logits: Tensor) -> Tensor:
    """Image-level targets ``[B]`` as per-query targets ``[B, Q]`` (``logits [B, K, Q]``), ignored on the queries
    that carry another attribute; patch targets unchanged."""
    if target.dim() != 1:
        return target
    mine = query_attribute(logits.shape[-1]) == list(world.ATTRIBUTES).index(name)  # [Q]
    return target[:, None].expand(-1, logits.shape[-1]).masked_fill(~mine, IGNORE_INDEX)


@torch.no_grad()
def accuracy(model: Towers, images: Tensor, labels: dict[str, Tensor], batch_size: int = 256) -> dict[str, float]:
    model.eval()
    correct = {name: 0 for name in world.ATTRIBUTES}
    for i in range(0, len(images), batch_size):
        logits = model(images[i : i + batch_size])
        for name in correct:
            mine = query_attribute(logits[name].shape[-1]) == list(world.ATTRIBUTES).index(name)
            votes = logits[name][..., mine].softmax(dim=1).mean(dim=2)  # [B, K]: its queries' mean prediction
            correct[name] += (votes.argmax(-1) == labels[name][i : i + batch_size]).sum().item()
    patch_correct = {name: [0, 0] for name in labels if name.startswith("patch_")}
    for i in range(0, len(images), batch_size):
        logits = model(images[i : i + batch_size])
        for name, counts in patch_correct.items():
            target = labels[name][i : i + batch_size]
            valid = target > 0
            counts[0] += ((logits[name].argmax(1) == target) & valid).sum().item()
            counts[1] += valid.sum().item()
    model.train()
    result = {name: c / len(images) for name, c in correct.items()}
    result.update({name: c / max(1, n) for name, (c, n) in patch_correct.items()})
    return result


def pretrain_towers(model_cfg: Any, cfg: TowerConfig, seed: int) -> tuple[Towers, dict[str, Any]]:
    """Train :class:`Towers` on freshly drawn scenes; return it and its held-out attribute accuracies."""
    torch.manual_seed(seed)
    model = Towers(model_cfg)
    patch = model_cfg.vit_patch_size
    images, labels = _dataset(cfg.images, model_cfg.image_size, patch, seed)
    test_images, test_labels = _dataset(max(200, cfg.images // 10), model_cfg.image_size, patch, seed + 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(warmup_cosine, warmup=cfg.warmup, steps=cfg.steps))
    generator = torch.Generator().manual_seed(seed)
    start = time.time()
    model.train()
    bar = training_steps("towers", cfg.steps)
    for step in bar:
        idx = torch.randint(0, len(images), (cfg.batch_size,), generator=generator)
        logits = model(images[idx])
        loss = sum(F.cross_entropy(logits[name], _per_query(name, labels[name][idx], logits[name])) for name in labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        log_milestone("towers", step, cfg.steps, loss.item(), start)
        if cfg.log_accuracy and step % cfg.log_accuracy == cfg.log_accuracy - 1:
            logger.info(
                "towers step %d accuracy %s",
                step,
                {k: round(v, 2) for k, v in accuracy(model, test_images, test_labels).items()},
            )
    acc = accuracy(model, test_images, test_labels)
    logger.info("towers: held-out attribute accuracy %s", {k: round(v, 3) for k, v in acc.items()})
    return model, {"final_loss": loss.item(), "accuracy": acc, "seconds": time.time() - start}
