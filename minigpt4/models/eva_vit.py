"""EVA-CLIP ViT-G/14, the frozen image encoder of BLIP-2 and MiniGPT-4.

Parameter names and shapes follow the released ``eva_vit_g.pth`` (listed in
``tests/models/layouts/layout_eva_vit_g.json``): a pre-norm ViT whose attention has a bias-free ``qkv`` projection
plus separate ``q_bias`` / ``v_bias`` (the key has no bias), no layer scale, no relative position bias, no final norm
and no head. The encoder returns every token, the class token included: ``[B, 1 + (H/14)*(W/14), 1408]``.
Stochastic depth (``DropPath``) and ``to_2tuple`` come from timm, as in the published encoder.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import DropPath, to_2tuple
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from minigpt4.models.weights import assign_weights, covers, read_weights

logger = logging.getLogger(__name__)

# EVA-CLIP ViT-G/14 as BLIP-2 uses it
EVA_G_WIDTH = 1408
EVA_G_DEPTH = 39
EVA_G_HEADS = 16
EVA_G_MLP_DIM = 6144
EVA_G_PATCH = 14
EVA_G_IMAGE_SIZE = 224
LAYER_NORM_EPS = 1e-6


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------


def interpolate_pos_embed(pos_embed: Tensor, num_patches: int, num_extra_tokens: int = 1) -> Tensor:
    """Resize a ``[1, extra + n*n, C]`` position embedding to ``extra + num_patches`` tokens (bicubic on the grid)."""
    old_patches = pos_embed.shape[1] - num_extra_tokens
    if old_patches == num_patches:
        return pos_embed
    old_size, new_size = int(math.isqrt(old_patches)), int(math.isqrt(num_patches))
    if old_size * old_size != old_patches or new_size * new_size != num_patches:
        raise ValueError(f"cannot interpolate a non-square position grid ({old_patches} -> {num_patches} patches)")
    logger.info("interpolating the ViT position embedding from %dx%d to %dx%d", old_size, old_size, new_size, new_size)
    extra, grid = pos_embed[:, :num_extra_tokens], pos_embed[:, num_extra_tokens:]
    dim = grid.shape[-1]
    grid = grid.reshape(1, old_size, old_size, dim).permute(0, 3, 1, 2).float()  # [1, C, n, n]
    grid = F.interpolate(grid, size=(new_size, new_size), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_size * new_size, dim).to(pos_embed.dtype)
    return torch.cat([extra, grid], dim=1)


# ----------------------------------------------------------------------------------------------------------
# blocks
# ----------------------------------------------------------------------------------------------------------


class PatchEmbed(nn.Module):
    """Image to patch tokens with one strided convolution.

    Args:
        img_size: input resolution, ``(height, width)`` or one int for a square.
        patch_size: patch size in pixels, ``(height, width)`` or one int for a square.
        in_chans: image channels.
        embed_dim: token width.
    """

    def __init__(
        self,
        img_size: int | tuple[int, int],
        patch_size: int | tuple[int, int],
        in_chans: int = 3,
        embed_dim: int = EVA_G_WIDTH,
    ) -> None:
        super().__init__()
        self.img_size, self.patch_size = to_2tuple(img_size), to_2tuple(patch_size)
        self.num_patches = (self.img_size[0] // self.patch_size[0]) * (self.img_size[1] // self.patch_size[1])
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=self.patch_size, stride=self.patch_size)

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) != self.img_size:
            raise ValueError(f"expected {self.img_size[0]}x{self.img_size[1]} images, got {tuple(x.shape[-2:])}")
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, C, h, w] -> [B, h*w, C]


class Attention(nn.Module):
    """Multi-head self-attention with EVA's biases: ``q_bias`` and ``v_bias``, none on the key.

    Args:
        dim: token width.
        num_heads: attention heads.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        B, N, C = x.shape
        bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias.to(self.qkv.weight.dtype))  # [B, N, 3C]
        q, k, v = qkv.reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)  # [B, h, N, d]
        out = F.scaled_dot_product_attention(q, k, v)  # [B, h, N, d]
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    """Two-layer GELU MLP."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``.

    Args:
        dim: token width.
        num_heads: attention heads.
        mlp_dim: MLP hidden width.
        drop_path: stochastic depth rate of this block (0: no ``DropPath`` module at all).
    """

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, mlp_dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


# ----------------------------------------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------------------------------------


class VisionTransformer(nn.Module):
    """EVA ViT returning all tokens (class token first), without a final norm.

    Args:
        img_size: input resolution (square).
        patch_size: patch side in pixels.
        embed_dim: token width (``num_features``).
        depth: number of blocks.
        num_heads: attention heads.
        mlp_dim: MLP hidden width.
        drop_path_rate: stochastic depth rate of the last block (linearly increasing from 0).
        use_checkpoint: recompute each block in the backward pass (activation checkpointing).
    """

    def __init__(
        self,
        img_size: int = EVA_G_IMAGE_SIZE,
        patch_size: int = EVA_G_PATCH,
        embed_dim: int = EVA_G_WIDTH,
        depth: int = EVA_G_DEPTH,
        num_heads: int = EVA_G_HEADS,
        mlp_dim: int = EVA_G_MLP_DIM,
        drop_path_rate: float = 0.0,
        use_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        self.image_size = img_size
        self.num_features = self.embed_dim = embed_dim
        self.use_checkpoint = use_checkpoint
        self.patch_embed = PatchEmbed(img_size, patch_size, 3, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, embed_dim))
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # linear, 0 -> rate
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_dim, rate) for rate in rates)
        self.init_weights()

    def init_weights(self) -> None:
        """Truncated-normal init (std 0.02) as in EVA; checkpoints overwrite it.

        torch's ``nn.init.trunc_normal_``, not timm's: the same distribution, but with torch >= 2.15 the two draw
        different numbers from one seed, and the tiny world's towers are pretrained from this draw (timm's gave
        them 46% instead of 99.5% held-out position accuracy at seed 0).
        """
        if self.pos_embed.is_meta:
            return
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x.to(self.patch_embed.proj.weight.dtype))  # [B, N, C]
        cls = self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype)
        x = torch.cat([cls, x], dim=1) + self.pos_embed.to(x.dtype)  # [B, 1 + N, C]
        for blk in self.blocks:
            if self.use_checkpoint and torch.is_grad_enabled():
                x = checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        return x

    def prepare_state(self, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The entries of ``state_dict`` this ViT has, ``pos_embed`` interpolated to its image size."""
        own = self.state_dict(keep_vars=True)
        used = {k: v for k, v in state_dict.items() if k in own}
        if "pos_embed" in used:
            used["pos_embed"] = interpolate_pos_embed(used["pos_embed"], self.patch_embed.num_patches)
        return used

    def load_state_dict_report(self, state_dict: dict[str, Tensor]) -> tuple[list[str], list[str]]:
        """Load non-strictly (interpolating ``pos_embed`` if needed); return (missing, unexpected) keys."""
        used = self.prepare_state(state_dict)
        result = self.load_state_dict(used, strict=False)
        return list(result.missing_keys), [k for k in state_dict if k not in used]


def convert_weights_to_fp16(model: nn.Module, dtype: torch.dtype = torch.float16) -> None:
    """Cast conv and linear weights and biases to fp16 (or ``dtype``), in place; norms, tokens and q/v biases
    stay fp32."""
    for module in model.modules():
        if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Linear):
            module.weight.data = module.weight.data.to(dtype)
            if module.bias is not None:
                module.bias.data = module.bias.data.to(dtype)


#: ``vit_precision`` values and the dtype of the conv/linear weights (None: kept as loaded, fp32)
VIT_PRECISIONS = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": None}


def create_eva_vit_g(
    img_size: int = EVA_G_IMAGE_SIZE,
    drop_path_rate: float = 0.4,
    use_checkpoint: bool = False,
    precision: str = "fp16",
    path: str | None = None,
    *,
    width: int = EVA_G_WIDTH,
    depth: int = EVA_G_DEPTH,
    num_heads: int = EVA_G_HEADS,
    mlp_dim: int = EVA_G_MLP_DIM,
    patch_size: int = EVA_G_PATCH,
    device: str | torch.device | None = None,
    low_memory: bool = True,
) -> VisionTransformer:
    """Build EVA ViT-G (or a smaller one through the overrides) and load ``path`` (a plain state dict) into it.

    Args:
        img_size: input resolution; the checkpoint's position embedding is interpolated to it.
        drop_path_rate: stochastic depth rate.
        use_checkpoint: activation checkpointing of every block.
        precision: ``"fp16"`` casts conv/linear weights to half after loading (published); ``"bf16"`` to
            bfloat16 (for bf16 autocast, on CPU too: a frozen fp32 weight would be re-cast at every call);
            ``"fp32"`` keeps fp32.
        path: local ``eva_vit_g.pth``; None builds with random weights (or on the meta device, shapes only).
        width, depth, num_heads, mlp_dim, patch_size: architecture overrides (tiny models).
        device: where to build; ``"meta"`` builds without memory and never loads.
        low_memory: with ``path``, build on the meta device and put the file's tensors in place in their final
            dtypes (:mod:`minigpt4.models.weights`: one copy of the weights, no random initialisation); a file
            that lacks some tensors, or False, builds with random weights first and loads over them (published).
            Either way the weights are the same.
    """
    if precision not in VIT_PRECISIONS:
        raise ValueError(f"vit_precision must be one of {', '.join(VIT_PRECISIONS)}, got {precision!r}")
    half = VIT_PRECISIONS[precision]

    def build(on: str | torch.device | None, cast: bool) -> VisionTransformer:
        """The ViT on ``on`` (the current default device for None), conv/linear weights cast to ``half`` if asked."""
        with torch.device(on) if on is not None else nullcontext():
            model = VisionTransformer(
                img_size=img_size,
                patch_size=patch_size,
                embed_dim=width,
                depth=depth,
                num_heads=num_heads,
                mlp_dim=mlp_dim,
                drop_path_rate=drop_path_rate,
                use_checkpoint=use_checkpoint,
            )
        if cast and half is not None:
            convert_weights_to_fp16(model, half)
        return model

    if path is None or str(device) == "meta":
        return build(device, cast=True)

    from minigpt4.models.base_model import resolve_model_path

    path = resolve_model_path(path, "model.vit_path")
    state = read_vit_state(path)
    if low_memory:
        model = build("meta", cast=True)
        lacking = covers(model.state_dict(), state)
        if not lacking:
            used = model.prepare_state(state)
            assign_weights(model, used, path)
            if device is not None:
                model.to(device)
            logger.info("loaded the ViT from %s (%d tensors, built on the meta device)", path, len(used))
            _log_unexpected(path, [k for k in state if k not in used])
            return model
        logger.info(
            "%s lacks %d ViT tensors (%s): building the ViT with random weights, then loading over them",
            path,
            len(lacking),
            ", ".join(lacking[:3]),
        )
    model = build(device, cast=False)
    missing, unexpected = model.load_state_dict_report(state)
    logger.info("loaded the ViT from %s (%d tensors)", path, len(state) - len(unexpected))
    if missing:
        logger.warning("ViT weights missing from %s: %s", path, ", ".join(missing))
    _log_unexpected(path, unexpected)
    if half is not None:
        convert_weights_to_fp16(model, half)
    return model


def _log_unexpected(path: str, unexpected: list[str]) -> None:
    if unexpected:
        logger.info("ignored keys of %s not used by the ViT: %s", path, ", ".join(unexpected))


def read_vit_state(path: str) -> dict[str, Tensor]:
    """The ViT state dict of ``path`` (a plain state dict, or one under ``"model"``), memory-mapped."""
    state_dict: Any = read_weights(path)
    if isinstance(state_dict, dict) and "model" in state_dict and isinstance(state_dict["model"], dict):
        state_dict = state_dict["model"]
    return state_dict
