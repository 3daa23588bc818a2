"""BLIP-2 building blocks MiniGPT-4 reuses: the EVA vision encoder, its ``ln_vision`` and the Q-Former."""

from __future__ import annotations

import contextlib
import logging
import os
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import Tensor, nn

from minigpt4.models.base_model import BaseModel, resolve_model_path
from minigpt4.models.eva_vit import VisionTransformer, create_eva_vit_g
from minigpt4.models.Qformer import Qformer, QformerConfig
from minigpt4.models.weights import read_weights, require_filled

logger = logging.getLogger(__name__)

VIT_MODELS = ("eva_clip_g",)


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 and cast back, so fp16 inputs are normalised precisely."""

    def forward(self, x: Tensor) -> Tensor:
        orig_type = x.dtype
        return super().forward(x.float()).to(orig_type)


def vit_sizes(cfg: Any) -> dict[str, int]:
    """The EVA ViT size arguments of a ``model`` section (``vit_width``, ``vit_depth``, ...)."""
    return {
        "width": cfg.vit_width,
        "depth": cfg.vit_depth,
        "num_heads": cfg.vit_heads,
        "mlp_dim": cfg.vit_mlp_dim,
        "patch_size": cfg.vit_patch_size,
    }


def qformer_sizes(cfg: Any) -> dict[str, int]:
    """The Q-Former size arguments of a ``model`` section (``qformer_hidden_size``, ...)."""
    return {
        "hidden_size": cfg.qformer_hidden_size,
        "num_hidden_layers": cfg.qformer_num_layers,
        "num_attention_heads": cfg.qformer_num_heads,
        "intermediate_size": cfg.qformer_intermediate_size,
    }


class Blip2Base(BaseModel):
    """Shared constructors of BLIP-2 style models (vision encoder, Q-Former, checkpoint loading)."""

    #: what ``maybe_autocast()`` uses when no dtype is given (LAVIS: fp16); None turns it off
    autocast_dtype: torch.dtype | None = torch.float16

    def maybe_autocast(self, dtype: torch.dtype | None = None) -> AbstractContextManager[Any]:
        """Autocast to ``dtype`` (default ``self.autocast_dtype``) where that makes sense, else a no-op.

        fp16/bf16 on CUDA; on CPU only bf16 (when asked); anything else (fp32, None, fp16 on CPU) does nothing,
        so an outer autocast (the runner's) stays in charge.
        """
        dtype = dtype if dtype is not None else self.autocast_dtype
        device = self.device
        if device.type == "cuda" and dtype in (torch.float16, torch.bfloat16):
            return torch.autocast("cuda", dtype=dtype)
        if device.type == "cpu" and dtype == torch.bfloat16:
            return torch.autocast("cpu", dtype=dtype)
        return contextlib.nullcontext()

    @classmethod
    def init_vision_encoder(
        cls,
        model_name: str,
        img_size: int,
        drop_path_rate: float,
        use_grad_checkpoint: bool,
        precision: str,
        *,
        path: str | None = None,
        device: str | torch.device | None = None,
        **vit_kwargs: Any,
    ) -> tuple[VisionTransformer, LayerNorm]:
        """The EVA ViT (weights from ``path`` when given) and ``ln_vision``, an fp32 LayerNorm over its width.

        ``vit_kwargs`` (width, depth, num_heads, mlp_dim, patch_size) shrink the encoder for tiny models;
        ``device="meta"`` builds shapes only.
        """
        if model_name not in VIT_MODELS:
            raise ValueError(f"unknown vit_model {model_name!r}; known: {', '.join(VIT_MODELS)}")
        visual_encoder = create_eva_vit_g(
            img_size, drop_path_rate, use_grad_checkpoint, precision, path, device=device, **vit_kwargs
        )
        with torch.device(device) if device is not None else contextlib.nullcontext():
            ln_vision = LayerNorm(visual_encoder.num_features)
        return visual_encoder, ln_vision

    @classmethod
    def meta_qformer(cls, cfg: Any) -> tuple[Qformer, nn.Parameter]:
        """The Q-Former and ``query_tokens`` a ``model`` section configures, on the meta device (shapes only)."""
        return cls.init_Qformer(
            cfg.num_query_token, cfg.vit_width, cfg.cross_attention_freq, device="meta", **qformer_sizes(cfg)
        )

    @classmethod
    def init_Qformer(
        cls,
        num_query_token: int,
        vision_width: int,
        cross_attention_freq: int = 2,
        *,
        hidden_size: int = 768,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 12,
        intermediate_size: int = 3072,
        device: str | torch.device | None = None,
    ) -> tuple[Qformer, nn.Parameter]:
        """The query-only Q-Former and its learned ``query_tokens`` ``[1, num_query_token, hidden]``."""
        config = QformerConfig(
            hidden_size=hidden_size,
            num_hidden_layers=num_hidden_layers,
            num_attention_heads=num_attention_heads,
            intermediate_size=intermediate_size,
            encoder_width=vision_width,
            cross_attention_freq=cross_attention_freq,
            query_length=num_query_token,
        )
        with torch.device(device) if device is not None else contextlib.nullcontext():
            qformer = Qformer(config)
            query_tokens = nn.Parameter(torch.zeros(1, num_query_token, hidden_size))
        if not query_tokens.is_meta:
            query_tokens.data.normal_(mean=0.0, std=0.02)
        return qformer, query_tokens

    def load_from_pretrained(
        self,
        path: str | os.PathLike[str],
        key: str = "model.q_former_model",
        state: dict[str, torch.Tensor] | None = None,
        assign: bool = False,
    ) -> None:
        """Load a BLIP-2 checkpoint (``{"model": {...}}``) non-strictly into this model, logging what it skipped.

        ``state``: the checkpoint's state dict when already read (:func:`read_blip2_state`); ``assign``: put its
        tensors in place (a Q-Former built on the meta device, see :mod:`minigpt4.models.weights`)."""
        path = resolve_model_path(path, key)
        if state is None:
            state = read_blip2_state(path)
        own = self.state_dict()
        used = {k: v for k, v in state.items() if k in own}
        skipped = sorted(k for k in state if k not in own)
        self.load_state_dict_report(used, source=path, report_missing=False, assign=assign)
        if assign:
            require_filled(self, path)  # the Q-Former and query_tokens were on the meta device
        expected = [k for k in own if k.startswith(("Qformer.", "query_tokens", "ln_vision."))]
        missing = [k for k in expected if k not in used]
        logger.info("loaded %d tensors from the BLIP-2 checkpoint %s", len(used), path)
        if missing:
            logger.warning("Q-Former tensors missing from %s: %s", path, ", ".join(missing))
        if skipped:
            logger.info("%d tensors of %s are not part of MiniGPT-4 (text branch, heads...)", len(skipped), path)


def read_blip2_state(path: str) -> dict[str, torch.Tensor]:
    """The state dict of a BLIP-2 checkpoint (``{"model": {...}}`` or a plain state dict), memory-mapped."""
    ckpt = read_weights(path, weights_only=False)
    return ckpt["model"] if isinstance(ckpt, dict) and "model" in ckpt else ckpt
