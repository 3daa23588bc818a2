"""Which attention kernel the LLM runs (``model.attn_implementation``), checked before the LLM is loaded."""

from __future__ import annotations

import importlib.util

#: ``model.attn_implementation`` values and what they need: sdpa (torch's fused attention, the default), eager
#: (the plain matmul-softmax the published code ran), flash_attention_2 (the ``flash-attn`` package, CUDA, 16-bit)
ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2")


def check_attn_implementation(name: str) -> str:
    """``name`` if it is one of :data:`ATTN_IMPLEMENTATIONS` and usable here.

    Raises:
        ValueError: an unknown name, or ``flash_attention_2`` without the ``flash_attn`` package installed.
    """
    if name not in ATTN_IMPLEMENTATIONS:
        raise ValueError(f"model.attn_implementation: expected one of {', '.join(ATTN_IMPLEMENTATIONS)}, got {name!r}")
    if name == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        raise ValueError(
            "model.attn_implementation=flash_attention_2 needs the flash-attn package (pip install flash-attn "
            "--no-build-isolation, on a CUDA machine, with model.torch_dtype float16 or bfloat16); it is not "
            "installed here: use sdpa (the default) or eager"
        )
    return name
